"""Click commands of this stage; vaar/cli.py registers COMMANDS."""

COMMANDS = []
