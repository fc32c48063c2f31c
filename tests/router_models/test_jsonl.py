"""JSONL files: unreadable files named with their line, and resumable appends after a torn last line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from router_models.errors import DataFormatError
from router_models.jsonl import append_lines, completed_lines, json_lines


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_lines_are_read_with_where_they_are(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with append_lines(path) as out:
        out.write('{"id": "a"}\n\n{"id": "b"}\n')
    assert list(json_lines(path)) == [(f"{path}:1", {"id": "a"}), (f"{path}:3", {"id": "b"})]


@pytest.mark.parametrize(("content", "says"), [
    (b'{"id": "a"}\n{"id": \n', "rows.jsonl:2: not valid JSON"),
    (b'{"id": "a"}\n{"id": "caf\xe9"}\n', "rows.jsonl: not UTF-8 text"),
])
def test_a_bad_line_is_named(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=says):
        list(json_lines(path))


def test_a_gz_name_on_plain_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    path.write_text('{"id": "a"}\n')
    with pytest.raises(DataFormatError, match=r"rows\.jsonl\.gz: not gzip-compressed UTF-8 text"):
        list(json_lines(path))


def test_an_interrupted_plain_file_resumes_on_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "resp')  # killed mid-write
    assert [row["id"] for row in completed_lines(path)] == ["a", "b"]
    with append_lines(path) as out:
        out.write('{"id": "c"}\n')
    assert [obj["id"] for _, obj in json_lines(path)] == ["a", "b", "c"]


def test_a_cut_gzip_file_yields_its_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(b'{"id": "%d"}\n' % i for i in range(2000)))[:-200])
    ids = [row["id"] for row in completed_lines(path)]
    assert ids and ids == [str(i) for i in range(len(ids))] and len(ids) < 2000


def test_nothing_to_resume_from_a_missing_file(tmp_path: Path) -> None:
    assert list(completed_lines(tmp_path / "none.jsonl")) == []
