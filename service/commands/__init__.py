"""Subcommands of the `switchyard` CLI, one module each; the argument types they share are
`router_models.cli.arguments`."""

from __future__ import annotations

from router_models.cli.arguments import (
    at_least,
    fraction,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_int,
)

__all__ = ["at_least", "fraction", "non_negative_float", "non_negative_int", "port_number", "positive_int"]
