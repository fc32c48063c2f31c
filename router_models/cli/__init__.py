"""The CLIs of the learned models (`switchyard train`, `eval`, `label`, `split`, `collect`,
`thinkswitch-collect`) and the argument types they share."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from router_models.errors import InputError


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a count of requests, samples or tokens)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def key_from_env(variable: str | None) -> str | None:
    """The API key held in environment variable `variable` (an `--api-key-env`), None where no variable is
    named; raises `InputError` where the named variable is unset, rather than send no key."""
    if not variable:
        return None
    if variable not in os.environ:
        raise InputError(f"--api-key-env {variable}: no such environment variable is set")
    return os.environ[variable]


def option_defaults(*actions: argparse.Action) -> dict[str, Any]:
    """dest -> default of argparse options (what `add_argument` returns), for `refuse_given`."""
    return {action.dest: action.default for action in actions}


def refuse_given(args: argparse.Namespace, defaults: Mapping[str, Any], why: str) -> None:
    """Raise `InputError` "--FLAG why" for the first option of `defaults` (dest -> its argparse default) that
    `args` sets to anything but its default (an option missing from `args` was not given)."""
    for dest, default in defaults.items():
        if getattr(args, dest, default) != default:
            raise InputError(f"--{dest.replace('_', '-')} {why}")
