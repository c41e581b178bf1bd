"""The one error a user can act on: commands and start-up raise it, the CLI prints it as one line."""


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed as one line, exit code 1."""
