"""The domain: config, clock and instants, events and intake rules, time buckets, rollup levels; imports nothing of the project."""
