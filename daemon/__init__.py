"""player-session-service daemon: core ← runtime (ingest, live, rollups, compat) ← cli; tools beside."""
