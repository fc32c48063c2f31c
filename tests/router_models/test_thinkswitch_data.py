"""The dataset loader: documented format, bad lines named, token caps, deterministic splits."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from routing_cli import switchyard

from router_models.thinkswitch.data import (
    DataFormatError,
    load_records,
    parse_record,
    read_records,
    record_to_json,
    select_split,
    split_of,
    under_short_retry,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "thinking_small.jsonl"


def test_reads_both_benchmarks_with_tokens_only_where_known() -> None:
    records = read_records(FIXTURE)
    gsm = [r for r in records if r.benchmark == "GSM8K"]
    math = [r for r in records if r.benchmark == "MATH"]
    assert len(gsm) == 40 and len(math) == 20
    assert all(r.short.mean_tokens is not None and r.long.mean_tokens is not None for r in gsm)
    assert all(r.short.mean_tokens is None and r.short.samples == 8 for r in math)
    assert set(gsm[0].by_cap) == {512, 1024}


def test_cap_selects_by_cap_results(tmp_path: Path) -> None:
    record = read_records(FIXTURE)[0]
    at_512 = record.at_cap(512)
    assert at_512.max_tokens == 512
    assert at_512.long == record.by_cap[512][1] and at_512.long.hit_cap == 1 and at_512.long.pass_rate == 0.0
    assert record.at_cap(2048) is record and record.at_cap(None) is record
    with pytest.raises(DataFormatError, match=re.escape(f"question {record.id!r} has no results at cap 4096")):
        record.at_cap(4096)


def test_gzip_and_round_trip(tmp_path: Path) -> None:
    records = read_records(FIXTURE)
    path = tmp_path / "copy.jsonl.gz"
    with gzip.open(path, "wt") as sink:
        sink.writelines(json.dumps(record_to_json(r)) + "\n" for r in records)
    again = load_records([path])
    assert [(r.id, r.short, r.long, r.by_cap) for r in again] == [
        (r.id, r.short, r.long, r.by_cap) for r in records
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.pop("prompt"), "'prompt'"),
        (lambda o: o["modes"].pop("long"), "modes"),
        (lambda o: o["modes"]["short"].update(pass_rate=1.5), "modes.short.pass_rate"),
        (lambda o: o["modes"]["long"].update(samples=0), "modes.long.samples"),
        (lambda o: o["modes"]["long"].update(mean_tokens="many"), "modes.long.mean_tokens"),
        (lambda o: o["modes"]["long"].update(mean_tokens=float("nan")), "modes.long.mean_tokens: expected a finite"),
        (lambda o: o["modes"]["short"].update(mean_tokens=float("inf")), "modes.short.mean_tokens"),
        (lambda o: o["modes"]["long"].update(samples=1, hit_cap=2), r"modes.long.hit_cap: .* samples \(1\)"),
        (lambda o: o["meta"]["by_cap"].update(big={}), "by_cap"),
        (lambda o: o["meta"].update(by_cap=[1]), r"meta.by_cap must be an object keyed by token cap, got \[1\]"),
        (lambda o: o["meta"].update(by_cap="x"), "meta.by_cap must be an object keyed by token cap, got 'x'"),
        (lambda o: o["meta"]["by_cap"].update({"\u00b2": o["modes"]}), "meta.by_cap key '\u00b2' is not a token cap"),
        (lambda o: o["meta"]["by_cap"].update({"0": o["modes"]}), "meta.by_cap key '0' is not a token cap"),
        (lambda o: o["meta"]["by_cap"].update({"0512": o["modes"]}), "meta.by_cap key '0512' is not a token cap"),
        (lambda o: o.update(prompt=" \n "), "'prompt' must be a non-empty string"),
        (lambda o: o.update(model=5), "'model' must be a string or null, got 5"),
        (lambda o: o.update(meta=0), "'meta' must be an object or null, got 0"),
        (lambda o: o.update(meta=[1]), r"'meta' must be an object or null, got \[1\]"),
        (lambda o: o.update(max_tokens=True), "'max_tokens' must be a positive integer or null, got True"),
        (lambda o: o.update(max_tokens=2048.0), "'max_tokens' must be a positive integer or null, got 2048.0"),
    ],
)
def test_bad_line_is_named(tmp_path: Path, mutate: object, message: str) -> None:
    lines = FIXTURE.read_text().splitlines()[:3]
    bad = json.loads(lines[2])
    mutate(bad)  # type: ignore[operator]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([lines[0], lines[1], json.dumps(bad)]) + "\n")
    with pytest.raises(DataFormatError, match=rf"bad\.jsonl:3: .*{message}"):
        read_records(path)


def test_a_benchmark_with_token_counts_on_some_questions_only_is_refused(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    lines[1]["modes"]["short"]["mean_tokens"] = None  # one GSM8K question of 40; MATH has none at all
    path = tmp_path / "one_missing.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(DataFormatError, match="benchmark 'GSM8K': 1 of 40 questions lack token counts"):
        load_records([path])


def test_invalid_json_and_duplicates_are_named(tmp_path: Path) -> None:
    first = FIXTURE.read_text().splitlines()[0]
    path = tmp_path / "broken.jsonl"
    path.write_text(first + "\n\n{not json\n")
    with pytest.raises(DataFormatError, match=r"broken\.jsonl:3: not valid JSON"):
        read_records(path)
    path.write_text(first + "\n" + first + "\n")
    with pytest.raises(DataFormatError, match=r"broken\.jsonl:2: duplicate id"):
        read_records(path)
    with pytest.raises(DataFormatError, match="expected a JSON object"):
        parse_record([1, 2])
    with pytest.raises(DataFormatError, match=rf"thinking_small\.jsonl:1: duplicate id .* \(first at {FIXTURE}:1\)"):
        load_records([FIXTURE, FIXTURE])  # the same question twice is not more data


def test_splits_are_stable_and_proportional() -> None:
    ids = [f"q:{i}" for i in range(4000)]
    splits = [split_of(i) for i in ids]
    assert splits == [split_of(i) for i in ids]  # a pure function of the id
    shares = {name: splits.count(name) / len(ids) for name in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.70, abs=0.03)
    assert shares["val"] == pytest.approx(0.15, abs=0.02)
    assert shares["test"] == pytest.approx(0.15, abs=0.02)


def test_select_split_ignores_file_order() -> None:
    records = read_records(FIXTURE)
    forward = {r.id for r in select_split(records, "test")}
    backward = {r.id for r in select_split(records[::-1], "test")}
    assert forward == backward
    assert {r.id for r in select_split(records, "train", "val", "test")} == {r.id for r in records}


def test_short_retry_scores_a_cut_long_answer_as_short_mode() -> None:
    line = json.loads(FIXTURE.read_text().splitlines()[0])
    cut = {**line, "modes": {"short": {"samples": 1, "pass_rate": 1.0, "mean_tokens": 80.0},
                             "long": {"samples": 1, "pass_rate": 0.0, "mean_tokens": 2048.0, "hit_cap": 1}}}
    retried = parse_record(cut).with_short_retry()
    assert (retried.long.pass_rate, retried.long.mean_tokens) == (1.0, 2048.0 + 80.0)
    assert retried.short == parse_record(cut).short
    whole = parse_record(line)
    assert whole.with_short_retry() is whole  # nothing cut: unchanged
    # With several samples the cut ones count as wrong, then as short mode's pass rate.
    many = {**line, "modes": {"short": {"samples": 8, "pass_rate": 0.5, "mean_tokens": None},
                              "long": {"samples": 8, "pass_rate": 0.5, "mean_tokens": None, "hit_cap": 2}}}
    retried = parse_record(many).with_short_retry()
    assert retried.long.pass_rate == 0.5 + 0.25 * 0.5 and retried.long.mean_tokens is None
    assert [r.long.pass_rate for r in under_short_retry([parse_record(cut)], False)] == [0.0]


def test_the_same_file_twice_is_refused_by_train_and_eval(tmp_path: Path) -> None:
    first = json.loads(FIXTURE.read_text().splitlines()[0])["id"]
    message = f"{FIXTURE}:1: duplicate id {first!r} (first at {FIXTURE}:1)\n"
    assert switchyard("train", "--kind", "thinkswitch", "--data", str(FIXTURE), str(FIXTURE), "--out",
                      str(tmp_path / "out")) == (2, f"switchyard train: {message}")
    assert switchyard("eval", "--switcher", str(tmp_path / "none"), "--data", str(FIXTURE), str(FIXTURE)) == (
        2, f"switchyard eval: {message}")
