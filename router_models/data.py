"""The routing dataset: prompts with every candidate's real response and score.

Format (JSONL, optionally gzip-compressed, one prompt per line):

    {"id": "<benchmark>:<source id>", "benchmark": "<name>", "prompt": "<text the router sees>",
     "responses": {"<model>": "<answer>", ...}, "scores": {"<model>": <number>, ...}, "meta": {...}}

- `id` is unique across the files loaded together; splits are drawn from a hash of it, so they are
  stable across machines, file orders and Python versions.
- `scores` are raw and on the benchmark's own scale (0/1 correctness, judge grades, win margins...).
  Routers train on per-query min-max normalised scores, so scales never mix. A judge grade of -1
  ("no grade") is kept as it is, as the source data does: it ranks below every real grade.
- `meta.candidate_models` (optional) names the routed models; other keys of `meta` are free.
  `meta.split` ("train" / "validation"), where present, pins a training-set line to that split.
- A line lacking the score of a candidate is dropped when the routing table is built (`RoutingTable`
  counts them); a missing response reads as the empty string.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from router_models.errors import DataFormatError, InputError
from router_models.jsonl import json_lines, open_text

LABEL_THRESHOLD = 0.8  # y_t = 1 iff normalised s_t >= 0.8 * max_j s_j (Lookahead, Huang et al., NeurIPS 2025)
Split = Literal["train", "val", "test"]
Protocol = Literal["in-distribution", "leave-one-out"]
PROTOCOLS: tuple[str, ...] = ("in-distribution", "leave-one-out")




@dataclass(frozen=True)
class Record:
    """One prompt with the candidates' answers and raw scores, as read from a line."""

    id: str
    benchmark: str
    prompt: str
    responses: dict[str, str]
    scores: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "benchmark": self.benchmark,
            "prompt": self.prompt,
            "responses": self.responses,
            "scores": self.scores,
            "meta": self.meta,
        }


def _parse_line(obj: Any, where: str) -> Record:
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key, kind in (
        ("id", str),
        ("benchmark", str),
        ("prompt", str),
        ("responses", dict),
        ("scores", dict),
    ):
        if key not in obj:
            raise DataFormatError(f"{where}: missing field {key!r}")
        if not isinstance(obj[key], kind):
            raise DataFormatError(
                f"{where}: field {key!r} must be {kind.__name__}, got {type(obj[key]).__name__}"
            )
    for model, score in obj["scores"].items():
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise DataFormatError(f"{where}: score of {model!r} must be a finite number, got {score!r}")
    for model, response in obj["responses"].items():
        if not isinstance(response, str):
            raise DataFormatError(f"{where}: response of {model!r} must be a string")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise DataFormatError(f"{where}: field 'meta' must be an object")
    named = meta.get("candidate_models")
    if named is not None and not (isinstance(named, list) and named and all(isinstance(m, str) for m in named)):
        raise DataFormatError(f"{where}: meta.candidate_models must be a list of model names, got {named!r}")
    return Record(
        obj["id"],
        obj["benchmark"],
        obj["prompt"],
        obj["responses"],
        {k: float(v) for k, v in obj["scores"].items()},
        meta,
    )


def read_records(paths: Iterable[str | Path]) -> list[Record]:
    """Read and validate every line of the files; raise `DataFormatError` naming the first bad line."""
    records: list[Record] = []
    seen: dict[str, str] = {}
    for path in paths:
        for where, obj in json_lines(path):
            record = _parse_line(obj, where)
            if record.id in seen:
                raise DataFormatError(f"{where}: duplicate id {record.id!r} (first at {seen[record.id]})")
            seen[record.id] = where
            records.append(record)
    return records


def write_records(records: Iterable[Record], path: str | Path) -> int:
    """Write records in the format (gzip if the name ends in .gz); return how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open_text(path, "wt") as out:
        for record in records:
            out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def default_candidates(records: Sequence[Record]) -> list[str]:
    """The candidates named by the data: `meta.candidate_models` of the first line that has it, else the
    models scored on every line, in first-seen order."""
    for record in records:
        named = record.meta.get("candidate_models")
        if named is not None:  # a list of names: the loader checked
            return list(named)
    common = [m for m in records[0].scores if all(m in r.scores for r in records)] if records else []
    if not common:
        raise DataFormatError("no candidate models: give them explicitly or add meta.candidate_models")
    return common


# --- splits ----------------------------------------------------------------------------------------------


def id_fraction(record_id: str) -> float:
    """A uniform number in [0, 1) fixed by the id alone."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big") / 2**64


@dataclass(frozen=True)
class SplitSpec:
    """How lines are split. In-distribution: every benchmark gives train/val/test by id hash.
    Leave-one-out: the `holdout` benchmark is the whole test set; the others give train/val."""

    protocol: Protocol = "in-distribution"
    holdout: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol {self.protocol!r}; expected one of {PROTOCOLS}")
        if (self.protocol == "leave-one-out") != (self.holdout is not None):
            raise InputError("--protocol leave-one-out needs --holdout BENCH, and only it takes one")

    def split_of(self, record: Record) -> Split:
        pinned = record.meta.get("split")
        if self.protocol == "leave-one-out":
            if record.benchmark == self.holdout:
                return "test"
            if pinned in ("train", "validation"):
                return "train" if pinned == "train" else "val"
            return "val" if id_fraction(record.id) < self.val_fraction else "train"
        if pinned in ("train", "validation"):  # a training set with its own split has no test part
            return "train" if pinned == "train" else "val"
        u = id_fraction(record.id)
        return (
            "test"
            if u < self.test_fraction
            else "val"
            if u < self.test_fraction + self.val_fraction
            else "train"
        )


def split_records(records: Sequence[Record], spec: SplitSpec) -> dict[Split, list[Record]]:
    if spec.holdout is not None and not any(r.benchmark == spec.holdout for r in records):
        benchmarks = sorted({r.benchmark for r in records})
        raise InputError(f"holdout benchmark {spec.holdout!r} is not in the data (it has {benchmarks})")
    parts: dict[Split, list[Record]] = {"train": [], "val": [], "test": []}
    for record in records:
        parts[spec.split_of(record)].append(record)
    return parts


# --- scores and labels ------------------------------------------------------------------------------------


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Per-query min-max normalisation, (N, T) -> (N, T) in [0, 1]. A query where all candidates tie
    gets 1 everywhere: every candidate is as good as the best."""
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    return np.where(span > 0, (scores - low) / np.where(span > 0, span, 1.0), 1.0)


def routing_labels(scores: np.ndarray, threshold: float = LABEL_THRESHOLD) -> np.ndarray:
    """Multi-label targets (N, T): 1 where the normalised score reaches `threshold` x the query's best.
    Ties give several positives: no query is labelled with "the first best model"."""
    normalised = normalise_scores(scores)
    return (normalised >= threshold * normalised.max(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class RoutingTable:
    """Records aligned to a candidate list: what models train and evaluate on."""

    candidates: list[str]
    ids: list[str]
    benchmarks: list[str]
    prompts: list[str]
    responses: list[list[str]]  # [N][T]
    scores: np.ndarray  # (N, T) raw
    dropped: int = 0  # lines lacking a candidate's score

    @classmethod
    def build(cls, records: Sequence[Record], candidates: Sequence[str]) -> RoutingTable:
        kept = [r for r in records if all(m in r.scores for m in candidates)]
        return cls(
            candidates=list(candidates),
            ids=[r.id for r in kept],
            benchmarks=[r.benchmark for r in kept],
            prompts=[r.prompt for r in kept],
            responses=[[r.responses.get(m, "") for m in candidates] for r in kept],
            scores=np.array([[r.scores[m] for m in candidates] for r in kept], dtype=np.float64).reshape(
                len(kept), len(candidates)
            ),
            dropped=len(records) - len(kept),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def normalised(self) -> np.ndarray:
        return normalise_scores(self.scores)

    @property
    def labels(self) -> np.ndarray:
        return routing_labels(self.scores)

    def subset(self, rows: Sequence[int]) -> RoutingTable:
        return RoutingTable(
            self.candidates,
            [self.ids[i] for i in rows],
            [self.benchmarks[i] for i in rows],
            [self.prompts[i] for i in rows],
            [self.responses[i] for i in rows],
            self.scores[list(rows)].reshape(len(rows), len(self.candidates)),
        )

    def by_benchmark(self) -> dict[str, RoutingTable]:
        groups: dict[str, list[int]] = {}
        for row, name in enumerate(self.benchmarks):
            groups.setdefault(name, []).append(row)
        return {name: self.subset(rows) for name, rows in sorted(groups.items())}


def load_table(
    paths: Iterable[str | Path],
    candidates: Sequence[str] | None = None,
    spec: SplitSpec | None = None,
    split: Split | None = None,
) -> RoutingTable:
    """Read files into a table; with `spec` and `split`, keep only that part of the split."""
    records = read_records(paths)
    if spec is not None and split is not None:
        records = split_records(records, spec)[split]
    return RoutingTable.build(records, list(candidates) if candidates else default_candidates(records))
