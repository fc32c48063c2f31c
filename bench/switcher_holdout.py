"""Simulate shipping the ThinkSwitcher on the training splits (never the test split).

    python bench/switcher_holdout.py DATA... [--config FILE] [--seeds 0 1 2] [--cache emb.pt] [--json FILE]
        [--blind GSM8K=409 MATH=163]

Per seed the train+val questions fall into 5 outer folds. Each fold in turn is held out entirely while the
switcher is trained on the other four exactly as `switchyard train` does (its own inner folds, τ chosen per
benchmark by the `--config` options' rule, default `TrainOptions`), and then decides the held-out fold's
questions with all its members at that τ, as the shipped artifact decides new questions. Printed per
benchmark, over the seeds: points against the reference (the better single mode where tokens are known, else
always-long; the short retry's own gain counts, as in `switchyard eval`), long share and mean tokens as a
share of always-long's, with the worst seed.

`--blind BENCH=N` also draws random sets of N of the benchmark's simulated decisions (with replacement, 1,000
per seed): how the figures and the targets (`bench/switcher_targets.py`) fare on a blind set of that size,
judged against its own reference. The spread is the sampling noise such a set adds to the same switcher's
quality.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.switcher_inputs import training_inputs  # noqa: E402
from bench.switcher_targets import met  # noqa: E402
from router_models.cli import exit_status  # noqa: E402
from router_models.cli.arguments import at_least  # noqa: E402
from router_models.encoder import set_threads  # noqa: E402
from router_models.thinkswitch.curves import Outcomes, reference  # noqa: E402
from router_models.thinkswitch.data import (  # noqa: E402
    ThinkRecord,
    benchmarks,
    by_benchmark,
    masked,
    under_short_retry,
)
from router_models.thinkswitch.model import ThinkSwitchConfig  # noqa: E402
from router_models.thinkswitch.train import TrainOptions, fit_switcher, fold_of, read_config  # noqa: E402

OUTER_FOLDS = 5
DRAWS_PER_SEED = 1000


def decide_held_out(
    records: list[ThinkRecord],
    embeddings: torch.Tensor,
    features: torch.Tensor,
    config: ThinkSwitchConfig,
    options: TrainOptions,
    bar: tqdm,
) -> np.ndarray:
    """(N,) bool: each question's decision by the switcher trained without its outer fold (outer folds drawn
    by `config.seed`)."""
    outer = np.array([fold_of(f"outer{config.seed}:{r.id}", OUTER_FOLDS) for r in records])
    go = np.zeros(len(records), dtype=bool)
    for fold in range(OUTER_FOLDS):
        train = np.flatnonzero(outer != fold)
        result = fit_switcher(
            [records[i] for i in train], embeddings[train], features[train], config, options, progress=False
        )
        held = np.flatnonzero(outer == fold)
        with torch.inference_mode():
            pred = result.head(embeddings[held], features[held]).numpy()  # (n, 2), all members
        taus = np.array([result.taus.get(records[i].benchmark, result.default_tau) for i in held])
        go[held] = pred[:, 1] - pred[:, 0] >= taus
        bar.update()
    return go


def figures(records: list[ThinkRecord], decisions: list[np.ndarray], short_retry: bool) -> dict[str, Any]:
    """Per benchmark: per seed (points against the reference, long share, token share of always-long)."""
    report: dict[str, Any] = {}
    switched = under_short_retry(records, short_retry)
    for bench, mask in by_benchmark(records).items():
        plain = Outcomes.of(masked(records, mask))
        policy = Outcomes.of(masked(switched, mask))
        base = reference(plain)
        runs = []
        for go in decisions:
            row = policy.row(go[mask])
            tokens = None if row["mean_tokens"] is None else row["mean_tokens"] / float(plain.long_tokens.mean())
            points = 100 * (row["accuracy"] - base)
            runs.append({"points": points, "long_share": row["long_share"], "token_share": tokens})
        report[bench] = {"reference": base, "questions": int(mask.sum()), "runs": runs}
    return report


@dataclass(frozen=True)
class BlindDraws:
    """Figures of random question sets, one entry per set."""

    points: np.ndarray
    long_share: np.ndarray
    token_share: np.ndarray | None  # None without token counts

    def met(self) -> float:
        """The share of sets on which the target is met."""
        return float(met(self.points, self.long_share, self.token_share).mean())


def blind_draws(
    plain: Outcomes, policy: Outcomes, decisions: list[np.ndarray], size: int, rng: np.random.Generator
) -> BlindDraws:
    """Points, long share and token share (None without tokens) of random `size`-question sets, each against
    its own reference, `DRAWS_PER_SEED` per seed's decisions. Questions are drawn with replacement (a
    bootstrap): a blind set is a new sample of the benchmark, not a part of these questions."""
    picks = rng.integers(0, len(plain.short), (DRAWS_PER_SEED, size))
    base = plain.long[picks].mean(axis=1)
    if plain.has_tokens:
        base = np.maximum(base, plain.short[picks].mean(axis=1))
    points, shares, tokens = [], [], []
    for go in decisions:
        points.append(100 * (np.where(go, policy.long, policy.short)[picks].mean(axis=1) - base))
        shares.append(go[picks].mean(axis=1))
        spent = np.where(go, policy.long_tokens, policy.short_tokens)[picks].mean(axis=1)
        tokens.append(spent / plain.long_tokens[picks].mean(axis=1))
    return BlindDraws(np.concatenate(points), np.concatenate(shares),
                      np.concatenate(tokens) if plain.has_tokens else None)


def describe_draws(bench: str, size: int, draws: BlindDraws) -> str:
    p10, p50, p90 = np.percentile(draws.points, [10, 50, 90])
    text = (
        f"{bench:<6} on blind sets of {size} ({len(draws.points)} draws): points p10 {p10:+.2f}, median "
        f"{p50:+.2f}, p90 {p90:+.2f}; long share p90 {100 * np.percentile(draws.long_share, 90):.0f}%"
    )
    if draws.token_share is not None:
        text += f", tokens p90 {100 * np.percentile(draws.token_share, 90):.0f}% of always-long's"
    return text + f"; target met in {100 * draws.met():.0f}%"


def parse_blind(values: list[str]) -> dict[str, int]:
    sizes = {}
    for value in values:
        bench, _, size = value.partition("=")
        if not size.isdigit():
            raise SystemExit(f"--blind {value!r}: expected BENCH=N, e.g. GSM8K=409")
        sizes[bench] = int(size)
        if sizes[bench] < 1:
            raise SystemExit(f"--blind {value!r}: a set needs at least one question")
    return sizes


def describe(bench: str, figure: dict[str, Any]) -> str:
    points = np.array([run["points"] for run in figure["runs"]])
    shares = np.array([run["long_share"] for run in figure["runs"]])
    text = (
        f"{bench:<6} {points.mean():+.2f} points (sd {points.std():.2f}, worst {points.min():+.2f}) against "
        f"{100 * figure['reference']:.2f}%, long {100 * shares.mean():.0f}% (most {100 * shares.max():.0f}%)"
    )
    tokens = [run["token_share"] for run in figure["runs"] if run["token_share"] is not None]
    if tokens:
        text += f", tokens {100 * np.mean(tokens):.0f}% of always-long's (most {100 * max(tokens):.0f}%)"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="thinking dataset files (JSONL, .gz ok)")
    parser.add_argument("--config", help="JSON of model config and train options, as for `switchyard train`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one outer partition per seed")
    parser.add_argument("--cache", help="file to keep the question embeddings in between runs")
    parser.add_argument("--threads", type=at_least(1), default=2, help="torch threads")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--blind", nargs="+", default=[], metavar="BENCH=N",
                        help="also judge random sets of N questions of BENCH (e.g. GSM8K=409), as a blind set")
    args = parser.parse_args()
    blind = parse_blind(args.blind)
    set_threads(args.threads)
    config, options = read_config(args.config)
    records, embeddings, features = training_inputs(
        args.data, args.cache, config.max_length, options.cap, options.splits
    )
    missing = sorted(set(blind) - set(benchmarks(records)))
    if missing:
        raise SystemExit(f"--blind: no questions of {', '.join(missing)} in the data")
    with tqdm(total=len(args.seeds) * OUTER_FOLDS, desc="train without one outer fold", unit="fit") as bar:
        decisions = [
            decide_held_out(records, embeddings, features, replace(config, seed=seed), options, bar)
            for seed in args.seeds
        ]
    report = figures(records, decisions, options.short_retry)
    print(f"{len(records)} questions, {len(args.seeds)} outer partitions, options {options}")
    for bench, figure in report.items():
        print(describe(bench, figure))
    switched = under_short_retry(records, options.short_retry)
    rng = np.random.default_rng(0)
    masks = by_benchmark(records)
    for bench, size in blind.items():
        mask = masks[bench]
        plain = Outcomes.of(masked(records, mask))
        policy = Outcomes.of(masked(switched, mask))
        draws = blind_draws(plain, policy, [go[mask] for go in decisions], size, rng)
        print(describe_draws(bench, size, draws))
        report[bench]["blind"] = {"size": size, "met_share": draws.met()}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_status(Path(__file__).name, main))
