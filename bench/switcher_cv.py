"""Compare ThinkSwitcher training variants on cross-validated held-out predictions (never the test split).

    python bench/switcher_cv.py DATA... [--variant NAME=JSON ...] [--seeds 0 1 2] [--cache emb.pt]

Each variant is a JSON object of `ThinkSwitchConfig` fields applied over the defaults (`base={}` is always
run first). For every variant and seed the bagged head is trained on the train+val splits exactly as `switchyard
train` does, and each question is scored by the members that never saw it. Printed per benchmark:

- `nested`: accuracy when τ is chosen on the other four folds' held-out predictions (the trainer's budget
  rule: ≤ 50% long and, with token counts, ≤ 40% of always-long's tokens) and applied to the fifth: the honest
  estimate of "the switcher at its chosen τ";
- `@q`: accuracy when the top q of questions by predicted gain go long (no τ choice at all);
- each in points against the reference (the better single mode for GSM8K, always-long for MATH), as mean over
  seeds ± the standard error over the 5 folds (the spread a different sample of questions would give).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router_models.encoder import SentenceEncoder, set_threads  # noqa: E402
from router_models.thinkswitch.curves import Outcomes, best_within_budget, sweep  # noqa: E402
from router_models.thinkswitch.data import ThinkRecord, benchmarks, load_records, select_split  # noqa: E402
from router_models.thinkswitch.features import feature_matrix  # noqa: E402
from router_models.thinkswitch.model import ThinkSwitchConfig  # noqa: E402
from router_models.thinkswitch.switcher import embed  # noqa: E402
from router_models.thinkswitch.train import (  # noqa: E402
    aux_targets,
    fit_head,
    fold_of,
    heldout_predictions,
)

SHARES = {"GSM8K": (0.05, 0.1, 0.2), "MATH": (0.3, 0.4, 0.5)}


def top_share(gain: np.ndarray, share: float) -> np.ndarray:
    """(N,) bool: the `share` of questions with the largest predicted gain (ties broken by position)."""
    go = np.zeros(len(gain), dtype=bool)
    go[np.argsort(-gain, kind="stable")[: int(round(share * len(gain)))]] = True
    return go


def reference(outcomes: Outcomes) -> float:
    """What the switcher is judged against: the better single mode with tokens, always-long without."""
    if outcomes.has_tokens:
        return max(outcomes.short.mean(), outcomes.long.mean())
    return float(outcomes.long.mean())


def nested_choice(gain: np.ndarray, outcomes: Outcomes, folds: np.ndarray) -> np.ndarray:
    """(N,) bool: per fold, long where gain ≥ the τ the budget rule picks on the other folds."""
    go = np.zeros(len(gain), dtype=bool)
    for fold in np.unique(folds):
        rest = folds != fold
        part = Outcomes(*(a[rest] for a in (outcomes.short, outcomes.long, outcomes.short_tokens,
                                             outcomes.long_tokens)))
        tau = best_within_budget(sweep(gain[rest], part), part, 0.5, 0.4).get("tau", 0.0)
        go[~rest] = gain[~rest] >= tau
    return go


def metrics(gain: np.ndarray, outcomes: Outcomes, folds: np.ndarray, shares: tuple[float, ...]) -> dict:
    """name -> (points vs reference pooled, per-fold points vs each fold's reference)."""
    picks = {"nested": nested_choice(gain, outcomes, folds)}
    out = {}
    for name, go in picks.items():
        pooled = 100 * (outcomes.row(go)["accuracy"] - reference(outcomes))
        out[name] = (pooled, [], float(go.mean()))
    for share in shares:
        go = top_share(gain, share)
        per_fold = []
        for fold in np.unique(folds):
            m = folds == fold
            part = Outcomes(*(a[m] for a in (outcomes.short, outcomes.long, outcomes.short_tokens,
                                              outcomes.long_tokens)))
            per_fold.append(100 * (part.row(top_share(gain[m], share))["accuracy"] - reference(part)))
        out[f"@{share:.2f}"] = (100 * (outcomes.row(go)["accuracy"] - reference(outcomes)), per_fold, share)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+")
    parser.add_argument("--variant", action="append", default=[], help="NAME=JSON of config overrides")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", help="file to keep the embeddings in between runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write all figures to this file")
    parser.add_argument(
        "--rank-by", choices=["gain", "short"], default="gain",
        help="score the decision reads: the predicted gain ŷ_long − ŷ_short (the switcher's rule) or, as a "
        "diagnostic, −ŷ_short (long for the questions short mode is least likely to get right)",
    )
    args = parser.parse_args()
    set_threads(args.threads)
    records: list[ThinkRecord] = select_split(load_records(args.data), "train", "val")
    texts = [r.prompt for r in records]
    if args.cache and Path(args.cache).exists():
        embeddings = torch.load(args.cache)
    else:
        embeddings = embed(SentenceEncoder(max_length=ThinkSwitchConfig().max_length), texts)
        if args.cache:
            torch.save(embeddings, args.cache)
    features = torch.from_numpy(feature_matrix(texts))
    targets = torch.tensor([[r.short.pass_rate, r.long.pass_rate] for r in records], dtype=torch.float32)
    variants = [("base", {})] + [tuple(v.split("=", 1)) for v in args.variant]
    report: dict = {}
    for name, overrides in variants:
        values = json.loads(overrides) if isinstance(overrides, str) else overrides
        config = replace(ThinkSwitchConfig(), **values)
        aux = aux_targets(records, config.aux_targets)
        runs = []
        for seed in args.seeds:
            seeded = replace(config, seed=seed)
            # seed 0 uses the trainer's folds; other seeds re-draw the partition (repeated cross-validation)
            folds = torch.tensor([fold_of(r.id if seed == 0 else f"{seed}:{r.id}", config.folds)
                                  for r in records], dtype=torch.long)
            head = fit_head(embeddings, features, targets, folds, seeded, progress=False, aux=aux)
            pred = heldout_predictions(head, embeddings, features, folds)
            runs.append((pred[:, 1] - pred[:, 0] if args.rank_by == "gain" else -pred[:, 0], folds.numpy()))
        report[name] = {}
        line = [f"{name:<14}"]
        for bench in benchmarks(records):
            mask = np.array([r.benchmark == bench for r in records])
            outcomes = Outcomes.of([r for r, m in zip(records, mask, strict=True) if m])
            per_seed = [metrics(gain[mask], outcomes, run_folds[mask], SHARES.get(bench, (0.5,)))
                        for gain, run_folds in runs]
            report[name][bench] = {}
            for key in per_seed[0]:
                pooled = [m[key][0] for m in per_seed]
                fold_se = (np.mean([np.std(m[key][1], ddof=1) for m in per_seed]) / np.sqrt(5)
                           if per_seed[0][key][1] else float("nan"))
                fold_points = np.mean([m[key][1] for m in per_seed], axis=0) if per_seed[0][key][1] else []
                report[name][bench][key] = {"points": float(np.mean(pooled)), "seed_sd": float(np.std(pooled)),
                                            "fold_se": float(fold_se), "per_fold": list(map(float, fold_points)),
                                            "long_share": float(np.mean([m[key][2] for m in per_seed]))}
                text = f"{bench[:4]} {key} {np.mean(pooled):+.2f}"
                if len(fold_points):
                    # paired against the base variant fold by fold: is the difference beyond the fold spread?
                    diff = fold_points - np.array(report["base"][bench][key]["per_fold"])
                    text += f" (Δ{diff.mean():+.2f}±{diff.std(ddof=1) / np.sqrt(len(diff)):.2f})"
                line.append(text)
        print("  ".join(line), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
