"""The `detente` command."""
