"""The command line (`python -m daemon …`): the only layer that imports everything; each command registers itself."""
