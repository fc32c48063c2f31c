"""`switchyard eval --switcher DIR --data FILE...`: sweep τ per benchmark and judge the curve.

Prints, per benchmark, always-short, always-long, the oracle, always-long with the short retry (where the
switcher's policy has it: a long answer cut at the token cap is asked again in short mode), random mixing at
the chosen point's long share, the artifact's recommended τ (and its default τ, which the gateway serves with,
where the two differ) and the cheapest τ within `--target-drop` points
of always-long; `--plot` draws accuracy against mean tokens (or long share where the data has no token
counts) with all of them on the same axes; `--json` writes `{benchmark: {"always_short", "always_long",
"oracle", "curve"}}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_models.errors import DataFormatError, InputError
from router_models.thinkswitch.curves import (
    Outcomes,
    Row,
    above_random,
    baselines,
    meets_target,
    random_mix,
    sweep,
    with_tau,
)
from router_models.thinkswitch.data import (
    ThinkRecord,
    by_benchmark,
    load_records,
    masked,
    question_key,
    select_split,
    under_short_retry,
)


@dataclass
class BenchmarkResult:
    """Everything measured on one benchmark."""

    name: str
    outcomes: Outcomes  # as measured: the baselines and random mixing
    baselines: dict[str, Row]
    curve: list[Row]  # the switcher's policy, with the short retry where it is on
    chosen: Row  # at the artifact's τ for this benchmark
    target: Row | None  # cheapest point within the target drop
    switched: Outcomes  # the switcher's policy: as measured, or with the short retry
    short_retry: bool = False
    at_default: Row | None = None  # at the artifact's default τ (the gateway's), where this benchmark has its own

    def to_json(self) -> dict[str, Any]:
        return {**self.baselines, "curve": self.curve}


def evaluate(
    pred: np.ndarray,
    records: Sequence[ThinkRecord],
    taus: dict[str, float],
    default_tau: float,
    target_drop: float = 1.0,
    short_retry: bool = False,
) -> list[BenchmarkResult]:
    """Judge predictions (N, 2) on `records`, benchmark by benchmark. With `short_retry` the switcher's
    long answers cut at the cap are asked again in short mode (`ThinkRecord.with_short_retry`); the
    baselines it is judged against stay as measured."""
    gain = pred[:, 1] - pred[:, 0]
    results = []
    for name, mask in by_benchmark(records).items():
        chosen_records = masked(records, mask)
        outcomes = Outcomes.of(chosen_records)
        switched = Outcomes.of(under_short_retry(chosen_records, short_retry))
        curve = sweep(gain[mask], switched)
        tau = taus.get(name, default_tau)
        chosen = with_tau(switched.row(gain[mask] >= tau), tau)
        at_default = with_tau(switched.row(gain[mask] >= default_tau), default_tau) if tau != default_tau else None
        target = meets_target(curve, outcomes, target_drop)
        results.append(BenchmarkResult(name, outcomes, baselines(outcomes), curve, chosen, target, switched,
                                       short_retry, at_default))
    return results


def at_trained_cap(records: Sequence[ThinkRecord], manifest: dict[str, Any]) -> list[ThinkRecord]:
    """The records at the token cap the switcher was trained at (`train_options.cap`; none: each file's main
    cap); raises `DataFormatError` naming the first question without results at that cap."""
    cap = manifest.get("train_options", {}).get("cap")
    try:
        return [record.at_cap(cap) for record in records]
    except DataFormatError as error:
        raise DataFormatError(f"{error}: the switcher was trained at that cap (train_options.cap)") from None


def in_sample_warning(records: Sequence[ThinkRecord], manifest: dict[str, Any]) -> str | None:
    """A warning naming how many of `records` the artifact trained on (its figures on them are in-sample), or
    None where it trained on none of them or its manifest does not say."""
    trained = set(manifest.get("trained_questions", ()))
    seen = sum(question_key(record.prompt) in trained for record in records)
    if not seen:
        return None
    return (
        f"warning: the switcher trained on {seen} of these {len(records)} questions: figures on them are "
        "in-sample, not a judgement of new questions"
    )


def _fmt(row: Row | None) -> str:
    if row is None:
        return "(none)"
    tokens = "      -" if row["mean_tokens"] is None else f"{row['mean_tokens']:7.1f}"
    tau = f"  τ={row['tau']:+.4f}" if "tau" in row else ""
    return f"{100 * row['accuracy']:6.2f}%  {tokens}  {100 * row['long_share']:5.1f}%{tau}"


def report(results: list[BenchmarkResult], target_drop: float) -> str:
    """The printed table: one block per benchmark."""
    lines = []
    for result in results:
        chosen_random = random_mix(result.outcomes, result.chosen["long_share"])
        lines += [
            f"{result.name} ({len(result.outcomes.short)} questions)   accuracy   tokens  long",
            f"  always short        {_fmt(result.baselines['always_short'])}",
            f"  always long         {_fmt(result.baselines['always_long'])}",
            f"  oracle              {_fmt(result.baselines['oracle'])}",
            *([f"  long, short retry   {_fmt(baselines(result.switched)['always_long'])}"]
              if result.short_retry else []),
            f"  random, same share  {_fmt(chosen_random)}",
            *([f"  ... with retry      {_fmt(random_mix(result.switched, result.chosen['long_share']))}"]
              if result.short_retry else []),
            f"  switcher (chosen)   {_fmt(result.chosen)}",
            *([f"  ... at default τ    {_fmt(result.at_default)}"] if result.at_default is not None else []),
            f"  {f'≤{target_drop:g} pt below long':<20}{_fmt(result.target)}",
            f"  curve above random mixing at every long share: {above_random(result.curve, result.outcomes)}",
            *([f"  ... and above it with the same retry: {above_random(result.curve, result.switched)}"]
              if result.short_retry else []),
        ]
    return "\n".join(lines)


def plot(results: list[BenchmarkResult], path: str | Path) -> None:
    """One panel per benchmark: accuracy against mean tokens (or long share), policies on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        cost = "mean_tokens" if result.outcomes.has_tokens else "long_share"

        def x(row: Row, cost: str = cost) -> float:
            value = row["mean_tokens"] if cost == "mean_tokens" else 100 * row["long_share"]
            return float(value or 0.0)

        def y(row: Row) -> float:
            return 100 * row["accuracy"]

        short, long = result.baselines["always_short"], result.baselines["always_long"]
        ax.plot(
            [x(r) for r in result.curve],
            [y(r) for r in result.curve],
            "-",
            color="C0",
            label="switcher (τ sweep" + (", short retry)" if result.short_retry else ")"),
        )
        ax.plot([x(short), x(long)], [y(short), y(long)], "--", color="grey", label="random mixing")
        for key, marker, color in (
            ("always_short", "s", "C1"),
            ("always_long", "D", "C2"),
            ("oracle", "*", "C3"),
        ):
            row = result.baselines[key]
            ax.plot([x(row)], [y(row)], marker, color=color, markersize=10, label=key.replace("_", " "))
        if result.short_retry:
            row = baselines(result.switched)["always_long"]
            ax.plot([x(row)], [y(row)], "d", color="C5", markersize=9, label="always long, short retry")
        ax.plot(
            [x(result.chosen)],
            [y(result.chosen)],
            "o",
            color="C0",
            markersize=9,
            label=f"chosen τ={result.chosen['tau']:+.3f}",
        )
        if result.target is not None:
            ax.plot([x(result.target)], [y(result.target)], "^", color="C4", markersize=9, label="target τ")
        ax.set_title(f"{result.name} ({len(result.outcomes.short)} questions)")
        ax.set_xlabel("mean generated tokens" if cost == "mean_tokens" else "questions sent to long mode (%)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(results: list[BenchmarkResult], path: str | Path) -> None:
    Path(path).write_text(json.dumps({r.name: r.to_json() for r in results}, indent=2) + "\n")


def eval_command(args: argparse.Namespace) -> int:
    """CLI entry of `switchyard eval --switcher DIR --data FILE...`."""
    from router_models.thinkswitch.artifact import read_manifest
    from router_models.thinkswitch.switcher import load_switcher

    target_drop, split = args.target_drop, args.split
    records = load_records(args.data)
    if split != "all":
        records = select_split(records, split)
    if not records:
        raise InputError(f"no questions in {', '.join(map(str, args.data))} (split: {split})")
    manifest = read_manifest(args.switcher)
    records = at_trained_cap(records, manifest)
    switcher = load_switcher(args.switcher)
    short_retry = switcher.short_retry if args.short_retry is None else args.short_retry
    pred = switcher.predict([record.prompt for record in records], progress=True)
    results = evaluate(pred, records, manifest.get("taus", {}), switcher.default_tau, target_drop, short_retry)
    retry = "on" if short_retry else "off"
    cap = manifest.get("train_options", {}).get("cap")
    print(f"switcher {switcher.version} on {len(records)} questions (split: {split}, short retry: {retry}"
          + (f", token cap: {cap})" if cap else ")"))
    if warning := in_sample_warning(records, manifest):
        print(warning, file=sys.stderr)
    print(report(results, target_drop))
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    return 0
