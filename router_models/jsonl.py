"""JSONL files, plain or gzip-compressed (`.gz`): one reader for every data format of the project.

A file that is not UTF-8 text (or not gzip, for a `.gz` name) raises `DataFormatError` naming the
file, a line that is not JSON one naming file and line. Files written line by line by a resumable command are read
back with `completed_lines`, which drops what an interrupted run left torn at the end, and appended to
with `append_lines`, which first cuts such a torn line off a plain file.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from router_models.errors import DataFormatError

_UNREADABLE = (gzip.BadGzipFile, EOFError, UnicodeDecodeError, zlib.error)


def open_text(path: str | Path, mode: str = "rt") -> IO[str]:
    """A text stream of a plain or gzipped (`.gz`) file; the caller closes it."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def json_lines(path: str | Path) -> Iterator[tuple[str, Any]]:
    """("file:line", parsed JSON) for every non-blank line."""
    try:
        with open_text(path) as lines:
            for number, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as error:
                    raise DataFormatError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
                yield where, value
    except _UNREADABLE as error:
        kind = "gzip-compressed UTF-8 text" if Path(path).suffix == ".gz" else "UTF-8 text"
        raise DataFormatError(f"{path}: not {kind} ({error})") from None  # decoded ahead: no line number


def completed_lines(path: str | Path) -> Iterator[Any]:
    """The parsed lines of a file a resumable command appends to, without a torn last line or a cut gzip
    stream (an interrupted run); nothing when the file does not exist."""
    if not Path(path).is_file():
        return
    try:
        with open_text(path) as lines:
            for text in lines:
                try:
                    yield json.loads(text)
                except json.JSONDecodeError:
                    continue
    except (EOFError, zlib.error):
        return


def append_lines(path: str | Path) -> IO[str]:
    """A text stream appending to `path` (created if missing); a torn last line of a plain file, left by
    an interrupted run, is cut off first so the next line starts on its own."""
    path = Path(path)
    if path.suffix != ".gz" and path.is_file():
        with open(path, "rb+") as raw:
            size = end = raw.seek(0, os.SEEK_END)
            while end > 0:
                start = max(0, end - 65_536)
                raw.seek(start)
                cut = raw.read(end - start).rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
                    break
                end = start
            if end < size:
                raw.truncate(end)
    return open_text(path, "at")
