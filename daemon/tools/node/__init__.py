"""The local Cassandra node run from its Maven jars, for `make run`, `make test` and CI."""
