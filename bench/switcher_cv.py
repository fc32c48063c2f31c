"""Compare ThinkSwitcher training variants on cross-validated held-out predictions (never the test split).

    python bench/switcher_cv.py DATA... [--variant NAME=JSON ...] [--seeds 0 1 2] [--cache emb.pt]

Each variant is a JSON object of `ThinkSwitchConfig` fields applied over the defaults (`base={}` is always
run first). For every variant and seed the bagged head is trained on the train+val splits exactly as `switchyard
train` does, and each question is scored by the members that never saw it. Printed per benchmark:

- `nested`: accuracy when τ is chosen on the other four folds' held-out predictions (the trainer's rule and
  budget, `TrainOptions`) and applied to the fifth (`bench/switcher_holdout.py` simulates the shipped
  artifact more closely);
- `@q`: accuracy when the top q of questions by predicted gain go long (no τ choice at all);
- each in points against the reference (the better single mode where tokens are known, else always-long),
  the mean over seeds. Seed 0 uses the trainer's own folds; every other seed re-draws the 5-fold partition
  (repeated cross-validation). `Δ±SE`: the difference to the first variant, fold by fold (most of the fold
  spread is shared between variants), with its standard error over the folds; `--json` also keeps each figure's
  plain standard error over the folds (`fold_se`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.switcher_inputs import training_inputs  # noqa: E402
from router_models.cli import exit_status  # noqa: E402
from router_models.cli.arguments import at_least  # noqa: E402
from router_models.configs import check_types  # noqa: E402
from router_models.encoder import set_threads  # noqa: E402
from router_models.errors import InputError  # noqa: E402
from router_models.thinkswitch.curves import Outcomes, reference, sweep  # noqa: E402
from router_models.thinkswitch.data import ThinkRecord, by_benchmark, masked, under_short_retry  # noqa: E402
from router_models.thinkswitch.model import ThinkSwitchConfig  # noqa: E402
from router_models.thinkswitch.train import (  # noqa: E402
    TrainOptions,
    aux_targets,
    fit_head,
    fold_of,
    heldout_predictions,
    pass_rate_targets,
    tau_point,
)

SHARES = {"GSM8K": (0.05, 0.1, 0.2), "MATH": (0.3, 0.4, 0.5)}  # long shares judged (default: 0.5)
Figure = tuple[float, list[float], float]  # (points pooled, points per fold, long share)


def top_share(gain: np.ndarray, share: float) -> np.ndarray:
    """(N,) bool: the `share` of questions with the largest predicted gain (ties broken by position)."""
    go = np.zeros(len(gain), dtype=bool)
    go[np.argsort(-gain, kind="stable")[: int(round(share * len(gain)))]] = True
    return go


def subset(outcomes: Outcomes, mask: np.ndarray) -> Outcomes:
    """The outcomes of the questions where `mask` (N,) is set."""
    return Outcomes(outcomes.short[mask], outcomes.long[mask], outcomes.short_tokens[mask], outcomes.long_tokens[mask])


def nested_choice(gain: np.ndarray, outcomes: Outcomes, plain: Outcomes, folds: np.ndarray) -> np.ndarray:
    """(N,) bool: per fold, long where gain ≥ the τ the trainer's rule picks on the other folds (`outcomes`:
    the policy's, `plain`: as measured, for the token budget)."""
    go = np.zeros(len(gain), dtype=bool)
    for fold in np.unique(folds):
        rest = folds != fold
        part = subset(outcomes, rest)
        tau = tau_point(sweep(gain[rest], part), subset(plain, rest), TrainOptions()).get("tau", 0.0)
        go[~rest] = gain[~rest] >= tau
    return go


def metrics(
    gain: np.ndarray, outcomes: Outcomes, plain: Outcomes, folds: np.ndarray, shares: tuple[float, ...]
) -> dict[str, Figure]:
    """The figures of one run on one benchmark: "nested" (τ by the budget rule on the other folds) and "@q",
    in points of the policy's `outcomes` against the reference of the `plain` ones (as measured)."""
    go = nested_choice(gain, outcomes, plain, folds)
    nested = 100 * (outcomes.row(go)["accuracy"] - reference(plain))
    out: dict[str, Figure] = {"nested": (nested, [], float(go.mean()))}
    for share in shares:
        per_fold = []
        for fold in np.unique(folds):
            part = subset(outcomes, folds == fold)
            base = reference(subset(plain, folds == fold))
            per_fold.append(100 * (part.row(top_share(gain[folds == fold], share))["accuracy"] - base))
        pooled = 100 * (outcomes.row(top_share(gain, share))["accuracy"] - reference(plain))
        out[f"@{share:.2f}"] = (pooled, per_fold, share)
    return out


def run_variant(
    records: list[ThinkRecord],
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    config: ThinkSwitchConfig,
    seeds: list[int],
    rank_by: str,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed: (N,) the held-out score the decision reads and (N,) the fold of each question."""
    embeddings, features, targets = inputs
    aux = aux_targets(records, config.aux_targets)
    runs = []
    for seed in seeds:
        folds = torch.tensor(
            [fold_of(r.id if seed == 0 else f"{seed}:{r.id}", config.folds) for r in records], dtype=torch.long
        )
        head = fit_head(embeddings, features, targets, folds, replace(config, seed=seed), progress=False, aux=aux)
        pred = heldout_predictions(head, embeddings, features, folds)  # (N, 2)
        runs.append((pred[:, 1] - pred[:, 0] if rank_by == "gain" else -pred[:, 0], folds.numpy()))
    return runs


def summarise(
    runs: list[tuple[np.ndarray, np.ndarray]],
    outcomes: Outcomes,
    plain: Outcomes,
    mask: np.ndarray,
    shares: tuple[float, ...],
    first: dict[str, Any] | None,
) -> tuple[dict[str, Any], str]:
    """One benchmark's figures over the seeds (for `--json`) and their printed line; `first`: the first
    variant's figures, to difference against fold by fold."""
    per_seed = [metrics(score[mask], outcomes, plain, folds[mask], shares) for score, folds in runs]
    figures: dict[str, Any] = {}
    texts = []
    for key in per_seed[0]:
        pooled = [m[key][0] for m in per_seed]
        per_fold = np.mean([m[key][1] for m in per_seed], axis=0) if per_seed[0][key][1] else np.array([])
        figures[key] = {
            "points": float(np.mean(pooled)),
            "seed_sd": float(np.std(pooled)),
            "fold_se": float(np.std(per_fold, ddof=1) / np.sqrt(len(per_fold))) if len(per_fold) > 1 else None,
            "per_fold": per_fold.tolist(),
            "long_share": float(np.mean([m[key][2] for m in per_seed])),
        }
        text = f"{key} {np.mean(pooled):+.2f}"
        if key == "nested":
            text += f" ({100 * figures[key]['long_share']:.0f}% long)"
        elif first is not None and len(per_fold) > 1:
            diff = per_fold - np.array(first[key]["per_fold"])
            text += f" (Δ{diff.mean():+.2f}±{diff.std(ddof=1) / np.sqrt(len(diff)):.2f})"
        texts.append(text)
    return figures, "  ".join(texts)


def variant(text: str) -> tuple[str, ThinkSwitchConfig]:
    """A `--variant NAME=JSON` as its name and config, checked while parsing (not after the base has trained)."""
    name, sep, overrides = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=JSON")
    try:
        fields = json.loads(overrides)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{name}: not JSON ({error})") from None
    if not isinstance(fields, dict):
        raise argparse.ArgumentTypeError(f"{name}: expected a JSON object of config fields, got {overrides}")
    if unknown := sorted(set(fields) - {f.name for f in dataclasses.fields(ThinkSwitchConfig)}):
        raise argparse.ArgumentTypeError(f"{name}: no config fields {', '.join(unknown)}")
    try:
        check_types(ThinkSwitchConfig, fields, name)
        return name, replace(ThinkSwitchConfig(), **fields)
    except ValueError as error:  # `InputError` included
        raise argparse.ArgumentTypeError(str(error) if isinstance(error, InputError) else f"{name}: {error}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="thinking dataset files (JSONL, .gz ok)")
    parser.add_argument("--variant", action="append", default=[], type=variant,
                        help="NAME=JSON of config overrides (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one training run per seed")
    parser.add_argument("--cache", help="file to keep the question embeddings in between runs")
    parser.add_argument("--threads", type=at_least(1), default=1, help="torch threads")
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument(
        "--rank-by",
        choices=["gain", "short"],
        default="gain",
        help="score the decision reads: the predicted gain ŷ_long − ŷ_short (the switcher's rule) or, as a "
        "diagnostic, −ŷ_short (long for the questions short mode is least likely to get right)",
    )
    parser.add_argument(
        "--short-retry",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train and judge the policy that asks a long answer cut at the token cap again in short mode, as "
        "`switchyard train` does by default (the reference stays the modes as measured)",
    )
    args = parser.parse_args()
    set_threads(args.threads)
    records, embeddings, features = training_inputs(args.data, args.cache, ThinkSwitchConfig().max_length)
    switched = under_short_retry(records, args.short_retry)
    targets = pass_rate_targets(switched)  # (N, 2)
    variants = [("base", ThinkSwitchConfig()), *args.variant]
    report: dict[str, dict[str, Any]] = {}
    for name, config in tqdm(variants, desc="variants", unit="variant"):
        runs = run_variant(records, (embeddings, features, targets), config, args.seeds, args.rank_by)
        report[name] = {}
        for bench, mask in by_benchmark(records).items():
            outcomes = Outcomes.of(masked(switched, mask))
            plain = Outcomes.of(masked(records, mask))
            first = report["base"][bench] if name != "base" else None
            report[name][bench], line = summarise(runs, outcomes, plain, mask, SHARES.get(bench, (0.5,)), first)
            tqdm.write(f"{name:<12} {bench:<6} {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_status(Path(__file__).name, main))
