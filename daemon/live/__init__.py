"""Live feed runtime: subscriptions, per-connection outboxes and writers, and the hub that fans stored starts out."""
