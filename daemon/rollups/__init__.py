"""Rollup runtime: recounts the per-country start totals of the periods that stored starts touched."""
