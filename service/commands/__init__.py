"""Subcommands of the `switchyard` CLI, one module each (their argument types: `router_models.cli.arguments`)."""
