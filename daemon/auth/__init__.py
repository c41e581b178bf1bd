"""API keys and per-key rate limits: who may call which route, and how often."""
