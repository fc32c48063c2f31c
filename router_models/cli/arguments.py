"""Argument types the command lines share (`switchyard`'s subcommands and the bench scripts).

Each type rejects a bad value while the arguments are parsed, so argparse reports it in one line (exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def port_number(text: str) -> int:
    """A TCP port, 1-65535."""
    value = _int(text, "a port")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range (1-65535)")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    """A whole number of at least `minimum` (e.g. 2 timed calls for a percentile)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not at least {minimum}")
        return value

    return parse


non_negative_int = at_least(0)
positive_int = at_least(1)


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is negative")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (e.g. seconds to wait)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not above 0")
    return value


def non_blank(text: str) -> str:
    """Text with something in it (a name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("cannot be empty")
    return text


def fraction(text: str) -> float:
    """A share between 0 and 1."""
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and 1")
    return value


def _int(text: str, what: str = "a whole number") -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
