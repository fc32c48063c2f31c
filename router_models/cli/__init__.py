"""The CLIs of the learned models (`switchyard train`, `eval`, `label`, `split`, `collect`,
`thinkswitch-collect`) and the argument types they share."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from router_models.errors import InputError


def exit_status(prog: str, run: Callable[[], int | None]) -> int:
    """`run()`'s exit status; a bad argument, data line or artifact (`InputError`), or a file or connection
    (`OSError`), is reported as one line `PROG: message` on stderr, without a traceback, and exits 2."""
    try:
        return int(run() or 0)
    except InputError as error:
        message = str(error)
    except OSError as error:
        message = f"{error.filename}: {error.strerror}" if error.filename is not None else str(error)
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def check_output_file(flag: str, path: str | Path | None, *, parent_created: bool = False) -> None:
    """Raise `InputError` where `path` cannot be written as a file (a folder, or in a folder that does not
    exist, unless the command creates it: `parent_created`): checked before minutes of work, not after.
    No path (an optional output not asked for): nothing to check."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder, not a file")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"{flag} {path}: {path.parent} is a file, not a folder")
    if not parent_created and not path.resolve().parent.is_dir():
        raise InputError(f"{flag} {path}: folder {path.parent} does not exist")


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
