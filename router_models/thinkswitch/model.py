"""The ThinkSwitcher head: from a question's representation to the predicted pass rate of each mode.

Input: the MiniLM sentence embedding (384-d) concatenated with a few surface features (`features.py`),
standardised with statistics saved in the checkpoint. Output: (ŷ_short, ŷ_long) in [0, 1].

The head is a small bag of K one-hidden-layer MLPs evaluated in one batched pass and averaged: member k is
trained on every question outside fold k mod `folds` (from its own random start), which steadies predictions
that a few hundred noisy labels would otherwise leave to chance, and gives held-out predictions for choosing τ
for free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from router_models.configs import above_zero, at_least, refuse_first
from router_models.encoder import ENCODER_NAME, ENCODER_POSITIONS, SentenceEncoder
from router_models.thinkswitch.data import CAP_KEY, MODES
from router_models.thinkswitch.features import FEATURE_NAMES

# Extra outputs trained where the data has them (`train.aux_targets` defines them): how long each mode writes,
# how often long mode runs out of tokens, the benchmark's difficulty level, pass rates at other token caps
# (`long_pass@512`). They only shape the hidden layer (cost and difficulty are what the gain depends on); not
# served. The default list is the one checkpoints without an `aux_targets` field were built with.
AUX_TARGETS: tuple[str, ...] = ("short_tokens", "long_tokens", "long_hit_cap")
# Every auxiliary target `train.aux_value` knows: these names, and MODE_pass@CAP (`long_pass@512`).
AUX_NAMES = ("short_tokens", "long_tokens", "long_hit_cap", "level")
AUX_PASS_RATE = re.compile(rf"({'|'.join(MODES)})_pass@({CAP_KEY.pattern})")  # a cap as `meta.by_cap` keys it


def is_aux_target(name: str) -> bool:
    """Whether `name` is an auxiliary target `train.aux_value` knows."""
    return name in AUX_NAMES or AUX_PASS_RATE.fullmatch(name) is not None


@dataclass
class ThinkSwitchConfig:
    """Everything needed to rebuild the head (saved in the manifest) and to retrain it."""

    encoder: str = ENCODER_NAME
    embedding_dim: int = 384
    n_features: int = len(FEATURE_NAMES)
    max_length: int = 256  # encoder tokens per question
    hidden: int = 64
    folds: int = 5  # member k never sees the questions of fold k % folds
    members: int = 15  # bagged MLPs (K), folds × repeats
    dropout: float = 0.2
    margin_weight: float = 0.25  # λ of the difference term in `switch_loss`
    offset_logit: bool = True  # predict long as an offset of short's logit (see `members_forward`)
    # That offset: one learned constant per member (the gain of thinking is a fixed shift of the logit, worth
    # most on questions of middling difficulty), or read from the question (checkpoints without this field).
    question_offset: bool = False
    aux_weight: float = 0.0  # weight of the auxiliary targets in the loss, where known
    aux_targets: list[str] = field(default_factory=lambda: list(AUX_TARGETS))  # their names (see above)
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse an untrainable (well-typed) config: `ValueError` naming the first problem."""
        checks = [
            *at_least(self, 1, "max_length", "hidden", "folds", "members", "epochs", "batch_size"),
            (self.members >= self.folds, f"members ({self.members}) must be at least folds ({self.folds}): "
             "every fold needs a member held out of it"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.max_length <= ENCODER_POSITIONS,
             f"max_length must be at most {ENCODER_POSITIONS} (the encoder's limit), got {self.max_length}"),
            *above_zero(self, "lr"),
            *at_least(self, 0, "margin_weight", "aux_weight", "weight_decay"),
            (self.encoder == ENCODER_NAME, f"encoder must be {ENCODER_NAME!r}, got {self.encoder!r}"),
            (self.embedding_dim == SentenceEncoder.dim,
             f"embedding_dim must be {SentenceEncoder.dim} (the encoder's), got {self.embedding_dim}"),
            (self.n_features == len(FEATURE_NAMES),
             f"n_features must be {len(FEATURE_NAMES)} (the surface features), got {self.n_features}"),
            *((is_aux_target(name), f"unknown auxiliary target {name!r} (known: {', '.join(AUX_NAMES)}, "
               "MODE_pass@CAP)") for name in self.aux_targets),
        ]
        refuse_first(checks)


def switch_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    margin_weight: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE on both pass rates plus λ times the squared error of the predicted gain of thinking:

        L = ½[(ŷ_s − y_s)² + (ŷ_l − y_l)²] + λ·((ŷ_l − ŷ_s) − (y_l − y_s))²

    averaged over questions (weighted by `weight` where given). pred, target: (..., 2) as (short, long);
    weight: pred.shape[:-1]. The difference term is what the decision reads (long when ŷ_l − ŷ_s ≥ τ): it ties
    the two outputs to the observed gain. It is kept light (λ = 0.25 by default): single-sample gains are ±1
    coin flips, and a large λ makes the head chase them instead of learning how hard a question is.
    """
    mse = 0.5 * ((pred - target) ** 2).sum(-1)
    gain_error = ((pred[..., 1] - pred[..., 0]) - (target[..., 1] - target[..., 0])) ** 2
    per_question = mse + margin_weight * gain_error
    if weight is None:
        return per_question.mean()
    return (per_question * weight).sum() / weight.sum().clamp(min=1.0)


def aux_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Masked MSE on the auxiliary outputs: pred (..., A), target (..., A) with NaN where unknown."""
    known = ~torch.isnan(target)
    error = torch.where(known, pred - torch.nan_to_num(target), torch.zeros_like(pred)) ** 2
    mask = known.float() * weight.unsqueeze(-1)
    return (error * mask).sum() / mask.sum().clamp(min=1.0)


class ThinkSwitchHead(nn.Module):
    """K MLPs on [embedding ‖ standardised features] -> (ŷ_short, ŷ_long), averaged over members."""

    feature_mean: torch.Tensor  # (F,) buffers: training statistics of the features
    feature_std: torch.Tensor  # (F,)

    def __init__(self, config: ThinkSwitchConfig) -> None:
        super().__init__()
        self.config = config
        k, d, h = config.members, config.embedding_dim + config.n_features, config.hidden
        self.register_buffer("feature_mean", torch.zeros(config.n_features))
        self.register_buffer("feature_std", torch.ones(config.n_features))
        self.w1 = nn.Parameter(torch.empty(k, d, h).uniform_(-(d**-0.5), d**-0.5))  # as nn.Linear
        self.b1 = nn.Parameter(torch.zeros(k, 1, h))
        outputs = 2 + len(config.aux_targets)
        self.w2 = nn.Parameter(torch.empty(k, h, outputs).uniform_(-(h**-0.5), h**-0.5))
        self.b2 = nn.Parameter(torch.zeros(k, 1, outputs))
        self.dropout = nn.Dropout(config.dropout)

    def members_forward(self, embedding: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """(B, E), (B, F) -> (K, B, 2 + A): each member's pass rates (short, long), then A aux outputs."""
        features = (features - self.feature_mean) / self.feature_std
        x = torch.cat([embedding, features], dim=-1)  # (B, D)
        if self.training:  # each member drops its own inputs, so the members stay diverse
            x = self.dropout(x.expand(self.config.members, *x.shape))  # (K, B, D)
            hidden = torch.bmm(x, self.w1)
        else:
            hidden = torch.matmul(x, self.w1)  # (B, D) broadcast over the K members, the weights read in place
        hidden = nn.functional.gelu(hidden + self.b1)  # (K, B, H)
        logits = torch.bmm(self.dropout(hidden), self.w2) + self.b2  # (K, B, 2 + A)
        if self.config.offset_logit:
            # long's logit = short's + a learned offset: the predicted gain fades where short is surely right
            offset = logits[..., 1:2] if self.config.question_offset else self.b2[..., 1:2].expand_as(logits[..., :1])
            logits = torch.cat([logits[..., :1], logits[..., :1] + offset, logits[..., 2:]], dim=-1)
        return torch.sigmoid(logits)

    def forward(self, embedding: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """(B, E), (B, F) -> (B, 2): the members' mean (ŷ_short, ŷ_long)."""
        return self.members_forward(embedding, features)[..., :2].mean(0)
