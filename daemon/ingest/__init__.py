"""Ingest runtime: admission of a request's events, per-partition actors with bounded inboxes, writes to Cassandra."""
