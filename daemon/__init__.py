"""player-session-service daemon: core (domain) ← ingest, live, rollups, compat (runtime) ← cli; tools beside the core."""
