"""The loader: streams a JSON Lines file to a running server in batches, with retries and progress."""
