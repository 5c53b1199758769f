"""The `strangler` command."""
