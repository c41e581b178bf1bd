"""The domain: config, clock, instants, events, intake rules, time buckets, rollup levels; no project imports."""
