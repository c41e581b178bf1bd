"""Storage: the Cassandra schema and the asyncio access layer over cassandra-driver; imports only the core."""
