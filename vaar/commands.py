"""Click commands for the whole chain (validate, run); vaar/cli.py registers COMMANDS."""

COMMANDS = []
