"""Tools beside the service (local Cassandra node, dataset generator, loader): they import only the core."""
