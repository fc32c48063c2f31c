"""The thinking dataset: per question, how one reasoning model did in short and in long mode.

One JSON object per line (`.jsonl`, optionally gzipped)::

    {"id": "gsm8k:57", "benchmark": "GSM8K", "prompt": "...", "answer": "83", "model": "Qwen3-8B",
     "max_tokens": 2048,
     "modes": {"short": {"samples": 1, "pass_rate": 1.0, "mean_tokens": 169.0, "hit_cap": 0},
               "long":  {"samples": 1, "pass_rate": 1.0, "mean_tokens": 878.0, "hit_cap": 0}},
     "meta": {"by_cap": {"512": {"short": {...}, "long": {...}}, ...}}}

`pass_rate` is the share of the `samples` answers that were right (0..1); `mean_tokens` the mean number of
generated tokens (null where unknown); `hit_cap` how many samples stopped at `max_tokens` (optional).
`meta` is free; `meta.by_cap` (optional) holds the same `modes` object measured at other token caps, keyed
by the cap. Splits are by a hash of `id`, so a question stays in the same split whatever the file order.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from router_models.errors import DataFormatError
from router_models.jsonl import json_lines
from router_models.thinkswitch.families import Mode

MODES: tuple[Mode, Mode] = ("short", "long")
Split = Literal["train", "val", "test"]
# Share of questions per split, in hash order: train, then validation, then test.
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.70, "val": 0.15, "test": 0.15}
# A key of meta.by_cap: a positive integer in ASCII digits, written one way only (`str.isdigit` also takes
# "²"; "0512" would be a second key for 512).
CAP_KEY = re.compile(r"[1-9][0-9]*")


@dataclass(frozen=True)
class ModeResult:
    """How one mode did on one question."""

    samples: int
    pass_rate: float
    mean_tokens: float | None = None
    hit_cap: int | None = None


@dataclass(frozen=True)
class ThinkRecord:
    """One question with the results of both modes (at the main cap, and at other caps in `by_cap`)."""

    id: str
    benchmark: str
    prompt: str
    short: ModeResult
    long: ModeResult
    answer: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    by_cap: dict[int, tuple[ModeResult, ModeResult]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def at_cap(self, cap: int | None) -> ThinkRecord:
        """This question as measured at token cap `cap` (None or the main cap: unchanged); raises
        `DataFormatError` naming the caps it has where it has no results at `cap`."""
        if cap is None or cap == self.max_tokens:
            return self
        if cap not in self.by_cap:
            caps = sorted({*self.by_cap, *([self.max_tokens] if self.max_tokens else [])})
            raise DataFormatError(f"question {self.id!r} has no results at cap {cap} "
                                  f"(it has {', '.join(map(str, caps)) or 'none'})")
        short, long = self.by_cap[cap]
        return replace(self, short=short, long=long, max_tokens=cap)

    def with_short_retry(self) -> ThinkRecord:
        """This question under the gateway's short retry: a long answer cut at the token cap is asked again
        in short mode. Long's cut samples then score as short mode does and cost long's tokens plus short's.
        Exact for one sample per mode; with several, the cut samples are taken to have been wrong."""
        long, short = self.long, self.short
        if not long.hit_cap:
            return self
        cut = long.hit_cap / long.samples
        rate = short.pass_rate if long.samples == 1 else min(1.0, long.pass_rate + cut * short.pass_rate)
        tokens = None
        if long.mean_tokens is not None and short.mean_tokens is not None:
            tokens = long.mean_tokens + cut * short.mean_tokens
        return replace(self, long=replace(long, pass_rate=rate, mean_tokens=tokens))


def _mode(obj: Any, where: str) -> ModeResult:
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected an object")
    samples, rate = obj.get("samples"), obj.get("pass_rate")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise DataFormatError(f"{where}.samples: expected an integer >= 1, got {samples!r}")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise DataFormatError(f"{where}.pass_rate: expected a number in [0, 1], got {rate!r}")
    tokens = obj.get("mean_tokens")
    if tokens is not None and (
        not isinstance(tokens, int | float) or isinstance(tokens, bool) or not math.isfinite(tokens) or tokens < 0
    ):
        raise DataFormatError(f"{where}.mean_tokens: expected a finite number >= 0 or null, got {tokens!r}")
    hit_cap = obj.get("hit_cap")
    if hit_cap is not None and (
        not isinstance(hit_cap, int) or isinstance(hit_cap, bool) or not 0 <= hit_cap <= samples
    ):
        raise DataFormatError(f"{where}.hit_cap: expected an integer from 0 to samples ({samples}), got {hit_cap!r}")
    return ModeResult(samples, float(rate), None if tokens is None else float(tokens), hit_cap)


def _modes(obj: Any, where: str) -> tuple[ModeResult, ModeResult]:
    if not isinstance(obj, dict) or any(mode not in obj for mode in MODES):
        raise DataFormatError(f"{where}: expected an object with 'short' and 'long'")
    return _mode(obj["short"], f"{where}.short"), _mode(obj["long"], f"{where}.long")


def _by_cap(obj: Any, where: str) -> dict[int, tuple[ModeResult, ModeResult]]:
    """`meta.by_cap`: an object of `modes` objects keyed by token cap (digits), or null/absent."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: meta.by_cap must be an object keyed by token cap, got {obj!r}")
    by_cap = {}
    for cap, modes in obj.items():
        if not CAP_KEY.fullmatch(cap):
            raise DataFormatError(f"{where}: meta.by_cap key {cap!r} is not a token cap (a positive integer)")
        by_cap[int(cap)] = _modes(modes, f"{where}: meta.by_cap.{cap}")
    return by_cap


def parse_record(obj: Any, where: str = "record") -> ThinkRecord:
    """Validate one decoded line and build its record; errors name `where` and the offending field."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object")
    for key in ("id", "benchmark", "prompt"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise DataFormatError(f"{where}: '{key}' must be a non-empty string")
    if obj.get("model") is not None and not isinstance(obj["model"], str):
        raise DataFormatError(f"{where}: 'model' must be a string or null, got {obj['model']!r}")
    short, long = _modes(obj.get("modes"), f"{where}: modes")
    meta = {} if obj.get("meta") is None else obj["meta"]
    if not isinstance(meta, dict):
        raise DataFormatError(f"{where}: 'meta' must be an object or null, got {meta!r}")
    by_cap = _by_cap(meta.get("by_cap"), where)
    max_tokens = obj.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise DataFormatError(f"{where}: 'max_tokens' must be a positive integer or null, got {max_tokens!r}")
    answer = obj.get("answer")
    return ThinkRecord(
        id=obj["id"],
        benchmark=obj["benchmark"],
        prompt=obj["prompt"],
        short=short,
        long=long,
        answer=None if answer is None else str(answer),
        model=obj.get("model"),
        max_tokens=max_tokens,
        by_cap=by_cap,
        meta=meta,
    )


def read_records(path: str | Path, seen: dict[str, str] | None = None) -> list[ThinkRecord]:
    """All records of one file; raises `DataFormatError` naming the first bad line ("file:line: ..."). `seen`
    (id -> where it was read) carries the ids of files read before, so that none is read twice."""
    records: list[ThinkRecord] = []
    seen = {} if seen is None else seen
    for where, obj in json_lines(path):
        record = parse_record(obj, where)
        if record.id in seen:
            raise DataFormatError(f"{where}: duplicate id {record.id!r} (first at {seen[record.id]})")
        seen[record.id] = where
        records.append(record)
    return records


def load_records(paths: Iterable[str | Path], cap: int | None = None) -> list[ThinkRecord]:
    """Records of several files, each taken at token cap `cap` where given (default: each file's main cap);
    raises `DataFormatError` naming the first question without results at that cap."""
    records: list[ThinkRecord] = []
    seen: dict[str, str] = {}
    for path in paths:
        for record in read_records(path, seen):
            try:
                records.append(record.at_cap(cap))
            except DataFormatError as error:
                raise DataFormatError(f"{path}: {error}") from None
    _check_token_counts(records)
    return records


def _check_token_counts(records: Sequence[ThinkRecord]) -> None:
    """Each benchmark has token counts on every question or on none: with some missing, the token budget and
    the mean-token columns would silently fall back to the long share alone."""
    by_benchmark: dict[str, list[bool]] = {}
    for record in records:
        has_tokens = record.short.mean_tokens is not None and record.long.mean_tokens is not None
        by_benchmark.setdefault(record.benchmark, []).append(has_tokens)
    for benchmark, counted in by_benchmark.items():
        missing = counted.count(False)
        if 0 < missing < len(counted):
            raise DataFormatError(
                f"benchmark {benchmark!r}: {missing} of {len(counted)} questions lack token counts (mean_tokens "
                f"null in a mode); give them on every question of a benchmark or on none")


def record_to_json(record: ThinkRecord) -> dict[str, Any]:
    """The line object of a record (the inverse of `parse_record`)."""

    def mode(result: ModeResult) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "samples": result.samples,
            "pass_rate": result.pass_rate,
            "mean_tokens": result.mean_tokens,
        }
        if result.hit_cap is not None:
            obj["hit_cap"] = result.hit_cap
        return obj

    return {
        "id": record.id,
        "benchmark": record.benchmark,
        "prompt": record.prompt,
        "answer": record.answer,
        "model": record.model,
        "max_tokens": record.max_tokens,
        "modes": {"short": mode(record.short), "long": mode(record.long)},
        "meta": record.meta,
    }


def split_of(record_id: str, fractions: dict[str, float] = SPLIT_FRACTIONS) -> str:
    """The split of a question, from a hash of its id alone (stable across files, orders and machines)."""
    digest = hashlib.sha256(f"thinkswitch:{record_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    edge = 0.0
    for name, share in fractions.items():
        edge += share
        if position < edge:
            return name
    return next(reversed(fractions))


def question_key(prompt: str) -> str:
    """A short fingerprint of a question's text (16 hex digits), for telling whether an artifact trained on it."""
    return hashlib.blake2b(prompt.strip().encode(), digest_size=8).hexdigest()


def select_split(records: Sequence[ThinkRecord], *splits: str) -> list[ThinkRecord]:
    """The records whose id hashes into one of `splits`."""
    return [record for record in records if split_of(record.id) in splits]


def under_short_retry(records: Sequence[ThinkRecord], short_retry: bool = True) -> list[ThinkRecord]:
    """The records as the switch's policy sees them: with the short retry (`ThinkRecord.with_short_retry`)
    when `short_retry`, else as measured."""
    return [record.with_short_retry() for record in records] if short_retry else list(records)


def benchmarks(records: Sequence[ThinkRecord]) -> list[str]:
    """Benchmark names in first-seen order."""
    return list(dict.fromkeys(record.benchmark for record in records))


def by_benchmark(records: Sequence[ThinkRecord]) -> dict[str, np.ndarray]:
    """Each benchmark's questions among `records`, as a boolean (N,) mask over them, in first-seen order."""
    names = np.array([record.benchmark for record in records])
    return {name: names == name for name in benchmarks(records)}


Item = TypeVar("Item")


def masked(items: Sequence[Item], mask: np.ndarray) -> list[Item]:
    """The `items` where `mask` (a boolean array as long) is set."""
    return [item for item, keep in zip(items, mask, strict=True) if keep]
