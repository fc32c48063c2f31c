"""Subcommands of the `switchyard` CLI, one module each."""
