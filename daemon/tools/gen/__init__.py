"""The synthetic dataset generator: events shaped like the reference file, with chosen defects."""
