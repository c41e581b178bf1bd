"""Benchmarks: ingest against baselines, queries, and the live fan-out."""
