"""Cassandra schema files and the asyncio access layer over cassandra-driver."""
