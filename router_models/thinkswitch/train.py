"""Train the ThinkSwitcher: `switchyard train --kind thinkswitch --data FILE... --out DIR [--config FILE]`.

The K bagged members of the head are trained together, member k on every question outside fold k (folds by a
hash of the id). Each question's held-out prediction comes from the member that never saw it; τ is chosen on
those cross-validated predictions, per benchmark and pooled, so no question that picks τ also fitted it.
Questions of the `test` split (see `data.split_of`) are left out unless `--config` says otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from router_models.artifact import prepare_out
from router_models.configs import check_types, read_config_file
from router_models.encoder import SentenceEncoder, set_threads
from router_models.errors import InputError
from router_models.thinkswitch.artifact import KIND, save_artifact
from router_models.thinkswitch.curves import (
    Outcomes,
    Row,
    affordable,
    baselines,
    best_within_budget,
    spend_budget,
    sweep,
    with_tau,
)
from router_models.thinkswitch.data import (
    MODES,
    SPLIT_FRACTIONS,
    ThinkRecord,
    by_benchmark,
    load_records,
    masked,
    question_key,
    select_split,
    under_short_retry,
)
from router_models.thinkswitch.features import feature_matrix
from router_models.thinkswitch.model import (
    AUX_TARGETS,
    ThinkSwitchConfig,
    ThinkSwitchHead,
    aux_loss,
    is_aux_target,
    switch_loss,
)
from router_models.thinkswitch.switcher import embed

TAU_RULES = {"spend": spend_budget, "most_accurate": best_within_budget}
MIN_QUESTIONS = 100  # per benchmark: with fewer, its τ is picked on noise (warned about)


@dataclass
class TrainOptions:
    """What to train on and how τ is chosen (the `--config` JSON may set these and any model config field)."""

    cap: int | None = None  # token cap to take results at (default: each file's main cap)
    splits: list[str] = field(default_factory=lambda: ["train", "val"])
    # τ budget: at most this share sent long and, where tokens are known, at most this × always-long's
    # tokens; a little under the targets (50%, 40%), so that new questions at the same τ stay within them
    max_long_share: float = 0.48
    max_token_ratio: float = 0.36
    # "spend": the point within the budget that sends the most questions long (on average accuracy grows
    # with the long share up to the budget); "most_accurate": the most accurate point within it, which
    # chases the noise of the held-out curve
    tau_rule: str = "spend"
    # the gateway asks a long answer cut at the cap again in short mode: train and choose τ for that policy
    short_retry: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.tau_rule not in TAU_RULES:
            raise ValueError(f"tau_rule must be one of {sorted(TAU_RULES)}, not {self.tau_rule!r}")
        if not self.splits or not set(self.splits) <= set(SPLIT_FRACTIONS):
            raise ValueError(f"splits must be some of {list(SPLIT_FRACTIONS)}, not {self.splits}")
        for name in ("cap", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 or null, got {getattr(self, name)}")
        for name in ("max_long_share", "max_token_ratio"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a number in (0, 1], got {getattr(self, name)}")


@dataclass
class TrainResult:
    head: ThinkSwitchHead
    heldout_gain: np.ndarray  # (N,) cross-validated ŷ_long − ŷ_short
    taus: dict[str, float]
    default_tau: float


def fold_of(record_id: str, folds: int) -> int:
    """The fold a question belongs to (the members held out of it never train on it)."""
    return int.from_bytes(hashlib.sha256(f"fold:{record_id}".encode()).digest()[:8], "big") % folds


def aux_value(record: ThinkRecord, name: str) -> float:
    """One auxiliary target of a question in [0, 1], NaN where its data does not say.

    `short_tokens` / `long_tokens`: log tokens over log cap; `long_hit_cap`: long mode's cap-hit share;
    `level`: `meta.level` (1..5, e.g. MATH) mapped to [0, 1]; `MODE_pass@CAP`: the mode's pass rate at token
    cap CAP from `meta.by_cap` (e.g. `long_pass@512`).
    """

    def log_share(tokens: float | None, cap: int | None) -> float:
        return math.nan if tokens is None else math.log1p(tokens) / math.log1p(cap or 32768)

    if name == "short_tokens":
        return log_share(record.short.mean_tokens, record.max_tokens)
    if name == "long_tokens":
        return log_share(record.long.mean_tokens, record.max_tokens)
    if name == "long_hit_cap":
        return math.nan if record.long.hit_cap is None else record.long.hit_cap / record.long.samples
    if name == "level":
        level = record.meta.get("level")
        return (float(level) - 1) / 4 if isinstance(level, int | float) and 1 <= level <= 5 else math.nan
    if not is_aux_target(name):
        raise ValueError(f"unknown auxiliary target {name!r}")
    mode, _, cap = name.partition("_pass@")  # MODE_pass@CAP
    results = record.by_cap.get(int(cap))
    return math.nan if results is None else results[MODES.index(mode)].pass_rate


def aux_targets(records: Sequence[ThinkRecord], names: Sequence[str] = AUX_TARGETS) -> torch.Tensor:
    """(N, A) auxiliary targets `names` in [0, 1], NaN where unknown (see `aux_value`)."""
    rows = [[aux_value(r, name) for name in names] for r in records]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(records), len(names))


def pass_rate_targets(records: Sequence[ThinkRecord]) -> torch.Tensor:
    """(N, 2) what the head learns: each question's pass rate in short and in long mode."""
    return torch.tensor([[r.short.pass_rate, r.long.pass_rate] for r in records], dtype=torch.float32)


def fit_head(
    embeddings: torch.Tensor,
    features: torch.Tensor,
    targets: torch.Tensor,
    folds: torch.Tensor,
    config: ThinkSwitchConfig,
    progress: bool = True,
    aux: torch.Tensor | None = None,
) -> ThinkSwitchHead:
    """Train the K members on (N, E) embeddings, (N, F) features, (N, 2) targets; folds: (N,) fold ids;
    aux: (N, A) auxiliary targets (NaN where unknown), used when `config.aux_weight` > 0."""
    torch.manual_seed(config.seed)
    head = ThinkSwitchHead(config)
    head.feature_mean.copy_(features.mean(0))
    head.feature_std.copy_(
        features.std(0).clamp(min=1e-4) if len(features) > 1 else torch.ones(features.shape[1])
    )
    # weight[k, i] = 1 where member k trains on question i, i.e. i lies outside fold k mod F: (K, N)
    weight = (folds.unsqueeze(0) != member_folds(config).unsqueeze(1)).float()
    if config.folds == 1:
        weight = torch.ones_like(weight)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    head.train()
    for _ in tqdm(range(config.epochs), desc="train thinkswitch", unit="epoch", disable=not progress):
        for batch in torch.randperm(len(targets), generator=generator).split(config.batch_size):
            out = head.members_forward(embeddings[batch], features[batch])  # (K, B, 2 + A)
            pred = out[..., :2]
            loss = switch_loss(pred, targets[batch].expand_as(pred), config.margin_weight, weight[:, batch])
            if aux is not None and config.aux_weight > 0:
                aux_pred = out[..., 2:]
                loss = loss + config.aux_weight * aux_loss(
                    aux_pred, aux[batch].expand_as(aux_pred), weight[:, batch]
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head.eval()


def member_folds(config: ThinkSwitchConfig) -> torch.Tensor:
    """(K,) the fold each member is held out of."""
    return torch.arange(config.members) % config.folds


@torch.inference_mode()
def heldout_predictions(
    head: ThinkSwitchHead, embeddings: torch.Tensor, features: torch.Tensor, folds: torch.Tensor
) -> np.ndarray:
    """(N, 2) predictions of each question by the members that did not train on it (their mean)."""
    members = head.members_forward(embeddings, features)[..., :2]  # (K, N, 2)
    if head.config.folds == 1:
        return members.mean(0).numpy()
    held_out = (member_folds(head.config).unsqueeze(1) == folds.unsqueeze(0)).float()  # (K, N)
    return ((members * held_out.unsqueeze(-1)).sum(0) / held_out.sum(0).clamp(min=1).unsqueeze(-1)).numpy()


def tau_point(curve: list[Row], plain: Outcomes, options: TrainOptions) -> Row:
    """The point of a held-out curve the options' τ rule picks (`plain`: the outcomes as measured, which
    the token budget is relative to)."""
    return TAU_RULES[options.tau_rule](curve, plain, options.max_long_share, options.max_token_ratio)


def choose_tau(gain: np.ndarray, records: Sequence[ThinkRecord], options: TrainOptions) -> float:
    """The τ of the options' rule on held-out predictions (the policy's outcomes, with the short retry where
    the options say; the token budget relative to plain always-long).

    Over several benchmarks (the pooled `default_tau`, which the gateway serves with, not knowing the
    benchmark), only τs that keep every benchmark within its own budget count: a benchmark without token
    counts does not lift the token budget of one with them."""
    within_each = [_budget_check(gain[mask], masked(records, mask), options) for mask in by_benchmark(records).values()]
    curve = sweep(gain, Outcomes.of(under_short_retry(records, options.short_retry)))
    allowed = [row for row in curve if all(fits(row["tau"]) for fits in within_each)] or curve[:1]
    return tau_point(allowed, Outcomes.of(records), options).get("tau", 0.0)


def _budget_check(gain: np.ndarray, records: Sequence[ThinkRecord], options: TrainOptions) -> Callable[[float], bool]:
    """Whether a τ keeps one benchmark's questions (`records`, their predicted `gain`) within the options' budget."""
    switched = Outcomes.of(under_short_retry(records, options.short_retry))
    long_tokens = baselines(Outcomes.of(records))["always_long"]["mean_tokens"]

    def fits(tau: float) -> bool:
        row = with_tau(switched.row(gain >= tau), tau)
        return affordable(row, long_tokens, options.max_long_share, options.max_token_ratio)

    return fits


def train(
    records: Sequence[ThinkRecord],
    config: ThinkSwitchConfig,
    options: TrainOptions,
    encoder: SentenceEncoder | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fit the head on `records` and choose τ on its held-out predictions."""
    texts = [record.prompt for record in records]
    encoder = encoder or SentenceEncoder(max_length=config.max_length)
    embeddings = embed(encoder, texts, progress=progress)  # (N, 384)
    features = torch.from_numpy(feature_matrix(texts))  # (N, F)
    return fit_switcher(records, embeddings, features, config, options, progress)


def fit_switcher(
    records: Sequence[ThinkRecord],
    embeddings: torch.Tensor,
    features: torch.Tensor,
    config: ThinkSwitchConfig,
    options: TrainOptions,
    progress: bool = True,
) -> TrainResult:
    """`train` on the questions' (N, 384) embeddings and (N, F) features, already computed."""
    targets = pass_rate_targets(under_short_retry(records, options.short_retry))  # (N, 2)
    folds = torch.tensor([fold_of(r.id, config.folds) for r in records], dtype=torch.long)
    aux = aux_targets(records, config.aux_targets)
    head = fit_head(embeddings, features, targets, folds, config, progress, aux)
    pred = heldout_predictions(head, embeddings, features, folds)
    gain = pred[:, 1] - pred[:, 0]
    taus = {name: choose_tau(gain[mask], masked(records, mask), options)
            for name, mask in by_benchmark(records).items()}
    return TrainResult(head, gain, taus, choose_tau(gain, records, options))


def heldout_summary(
    result: TrainResult, records: Sequence[ThinkRecord], short_retry: bool
) -> dict[str, Any]:
    """Per benchmark: the baselines and the chosen τ's ROW on held-out predictions (for the manifest)."""
    summary = {}
    masks = by_benchmark(records)
    for name, tau in result.taus.items():
        mask = masks[name]
        chosen = masked(records, mask)
        switched = Outcomes.of(under_short_retry(chosen, short_retry))
        summary[name] = {
            **baselines(Outcomes.of(chosen)),
            "chosen": switched.row(result.heldout_gain[mask] >= tau),
            "questions": int(mask.sum()),
        }
    return summary


def read_config(
    path: str | None, flags: Mapping[str, Any] | None = None
) -> tuple[ThinkSwitchConfig, TrainOptions]:
    """Model config and train options from a JSON or YAML file, with `flags` (model config fields, already
    checked) overriding it, checked (types, ranges, unknown keys) before any data is read: raises
    `InputError` naming the file and the first problem."""
    values = read_config_file(path) if path else {}
    model_keys = {f.name for f in fields(ThinkSwitchConfig)}
    option_keys = {f.name for f in fields(TrainOptions)}
    unknown = set(values) - model_keys - option_keys
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(map(str, unknown))}")
    check_types(ThinkSwitchConfig, {k: v for k, v in values.items() if k in model_keys}, str(path))
    check_types(TrainOptions, {k: v for k, v in values.items() if k in option_keys}, str(path))
    try:
        options = TrainOptions(**{k: v for k, v in values.items() if k in option_keys})
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None
    try:
        config = ThinkSwitchConfig(**{k: v for k, v in values.items() if k in model_keys} | dict(flags or {}))
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None
    return config, options


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The model config fields `--seed` and `--epochs` set where given (the router-only flags are refused by
    the command line, `cli.train`)."""
    flags: dict[str, Any] = {}
    epochs = getattr(args, "epochs", None)
    if epochs is not None:
        # the flag's own message, so that it is not blamed on --config
        if not math.isfinite(epochs) or epochs != int(epochs) or epochs < 1:
            raise InputError(f"--epochs: --kind thinkswitch trains whole epochs, at least 1, not {epochs:g}")
        flags["epochs"] = int(epochs)
    if getattr(args, "seed", None) is not None:
        flags["seed"] = args.seed
    return flags


def check_training_questions(records: Sequence[ThinkRecord], short_retry: bool) -> None:
    """Warn about benchmarks with too few questions to pick τ on, or on which thinking never changes the
    outcome differently from one question to the next (nothing to learn)."""
    for name, mask in by_benchmark(records).items():
        chosen = masked(records, mask)
        if len(chosen) < MIN_QUESTIONS:
            print(f"warning: only {len(chosen)} training questions of {name}: its τ is picked on noise",
                  file=sys.stderr)
        gains = {r.long.pass_rate - r.short.pass_rate for r in under_short_retry(chosen, short_retry)}
        if len(gains) == 1:
            print(f"warning: the gain of long mode is {gains.pop():+g} on every training question of {name}: "
                  "the switcher has nothing to learn there", file=sys.stderr)


def train_command(args: argparse.Namespace) -> int:
    """CLI entry of `switchyard train --kind thinkswitch`."""
    config, options = read_config(getattr(args, "config", None), config_flags(args))
    set_threads(options.threads)
    records = select_split(load_records(args.data, options.cap), *options.splits)
    if not records:
        raise InputError(f"no training questions in {', '.join(args.data)} (splits: {', '.join(options.splits)})")
    check_training_questions(records, options.short_retry)
    # bench/switcher_eval.py calls this without the command line's --force and --quiet
    prepare_out(args.out, KIND, getattr(args, "force", False))
    print(f"training on {len(records)} questions ({', '.join(options.splits)} splits)")
    result = train(records, config, options, progress=not getattr(args, "quiet", False))
    summary = heldout_summary(result, records, options.short_retry)
    extra = {
        "taus": result.taus,
        "train_options": asdict(options),
        "heldout": summary,
        "trained_on": {name: s["questions"] for name, s in summary.items()},
        # fingerprints of the training questions, so that `eval` can say which figures are in-sample
        "trained_questions": sorted({question_key(record.prompt) for record in records}),
    }
    version = save_artifact(args.out, result.head, result.default_tau, extra)
    for name, s in summary.items():
        print(
            f"{name}: τ={result.taus[name]:+.4f} held-out accuracy {s['chosen']['accuracy']:.4f} "
            f"(short {s['always_short']['accuracy']:.4f}, long {s['always_long']['accuracy']:.4f}), "
            f"long share {s['chosen']['long_share']:.2f}"
        )
        if s["chosen"]["accuracy"] < s["always_short"]["accuracy"] - 1e-9:
            print(f"warning: {name}: on held-out predictions the switcher is less accurate than always-short: "
                  "it found no questions that gain from thinking (more data, or answers of more samples, may help)",
                  file=sys.stderr)
    print(f"wrote {args.out} (version {version}, default τ {result.default_tau:+.4f})")
    return 0
