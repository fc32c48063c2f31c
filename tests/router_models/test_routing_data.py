import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from router_models.data import (
    DataFormatError,
    RoutingTable,
    SplitSpec,
    normalise_scores,
    read_records,
    routing_labels,
    split_records,
    write_records,
)

GOOD = {
    "id": "b:1",
    "benchmark": "b",
    "prompt": "p",
    "responses": {"x": "a", "y": "b"},
    "scores": {"x": 1.0, "y": 0.0},
    "meta": {},
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not valid JSON"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "prompt"} | {"id": "b:2"}),
            "missing field 'prompt'",
        ),
        (json.dumps(GOOD | {"id": "b:2", "scores": {"x": "high"}}), "score of 'x' must be a finite number"),
        (json.dumps(GOOD | {"id": "b:2", "responses": {"x": 3}}), "response of 'x' must be a string"),
        (json.dumps(GOOD), "duplicate id 'b:1'"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps(GOOD | {"id": "b:2", "meta": {"candidate_models": "x"}}),
         "meta.candidate_models must be a list of model names, got 'x'"),
    ],
)
def test_loader_names_the_bad_line(tmp_path: Path, bad: str, message: str) -> None:
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD), "", bad])
    with pytest.raises(DataFormatError, match=rf"d\.jsonl:3: .*{message}"):
        read_records([path])


def test_reads_gzip_and_round_trips(tmp_path: Path, sample_path: Path) -> None:
    records = read_records([sample_path])
    assert write_records(records, tmp_path / "copy.jsonl.gz") == len(records)
    with gzip.open(tmp_path / "copy.jsonl.gz", "rt") as f:
        assert sum(1 for _ in f) == len(records)
    assert read_records([tmp_path / "copy.jsonl.gz"]) == records


def test_line_missing_a_candidate_is_dropped(sample_path: Path) -> None:
    records = read_records([sample_path])
    table = RoutingTable.build(records, records[0].meta["candidate_models"])
    assert table.dropped == 1  # the Arena-Hard question without one candidate's answer
    assert len(table) == len(records) - 1
    assert table.scores.shape == (len(table), 5)


def test_splits_are_deterministic_disjoint_and_cover(sample_path: Path) -> None:
    records = read_records([sample_path])
    first = split_records(records, SplitSpec())
    again = split_records(list(reversed(records)), SplitSpec())
    assert {k: sorted(r.id for r in v) for k, v in first.items()} == {
        k: sorted(r.id for r in v) for k, v in again.items()
    }
    ids = [r.id for part in first.values() for r in part]
    assert sorted(ids) == sorted(r.id for r in records)
    assert first["test"] and first["train"]
    pinned = [r for r in records if r.meta.get("split") == "train"]
    assert pinned and all(r in first["train"] for r in pinned)


def test_leave_one_out_holds_out_the_whole_benchmark(sample_path: Path) -> None:
    records = read_records([sample_path])
    parts = split_records(records, SplitSpec("leave-one-out", "GSM8k"))
    assert {r.benchmark for r in parts["test"]} == {"GSM8k"}
    assert len(parts["test"]) == sum(r.benchmark == "GSM8k" for r in records)
    assert all(r.benchmark != "GSM8k" for r in parts["train"] + parts["val"])
    with pytest.raises(ValueError, match="holdout"):
        SplitSpec("leave-one-out")


def test_normalisation_and_labels_handle_ties_and_scales() -> None:
    scores = np.array(
        [
            [1.0, 2.0, 2.0, 10.0],  # clear best
            [0.0, 1.0, 1.0, 0.0],  # tie for best: both positive
            [5.0, 5.0, 5.0, 5.0],  # all equal: all positive
            [-6.0, -1.0, 0.0, 6.0],  # arena-style margins
            [-1.0, 8.0, 7.5, 2.0],
        ]
    )  # a missing judge grade (-1) ranks lowest
    normalised = normalise_scores(scores)
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    np.testing.assert_allclose(normalised[3], [0.0, 5 / 12, 0.5, 1.0])
    labels = routing_labels(scores)
    np.testing.assert_array_equal(
        labels, [[0, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1], [0, 1, 1, 0]]
    )
