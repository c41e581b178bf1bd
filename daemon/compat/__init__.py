"""Runtime of the original service's GET /add/<n>: its server-side JSON Lines file, read by claimed line ranges."""
