"""Errors a user's input can cause, reported by the command line in one line, without a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class InputError(ValueError):
    """An argument, file or artifact the command cannot use; the message says which and why."""


class DataFormatError(InputError):
    """A line of a data file does not follow the documented format; the message names file and line."""


class ArtifactError(InputError):
    """A model artifact directory that is missing, incomplete or corrupt; the message starts with its path."""


@contextmanager
def loading_artifact(path: str | Path, kind: str) -> Iterator[None]:
    """Turn any failure while loading the artifact at `path` into an `ArtifactError` naming it."""
    try:
        yield
    except ArtifactError:
        raise
    except Exception as error:
        raise ArtifactError(f"{path}: cannot load this {kind} artifact: {error}") from error
