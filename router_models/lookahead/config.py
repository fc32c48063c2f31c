"""The typed config saved with every masked-Lookahead / MLC artifact; the loader rebuilds the model
from it."""

from __future__ import annotations

from dataclasses import dataclass

from router_models.configs import above_zero, at_least, refuse_first
from router_models.encoder import ENCODER_POSITIONS


@dataclass(frozen=True)
class LookaheadConfig:
    """Model and training settings. `block_size` 0 is the query-only classifier (MLC): same encoder,
    same head, same training loop, no response modelling — the comparison isolates that one thing.

    The defaults are the CPU budget: 8 response slots per candidate and 64 query tokens keep a
    5-candidate sequence near 110 tokens (the paper uses 64 slots and 2048 tokens on a GPU).
    """

    # model
    block_size: int = 8  # m: response slots per candidate
    max_query_tokens: int = 64  # query tokens the router reads (head and tail kept), [CLS]/[SEP] included
    mlm_weight: float = 0.2  # lambda in L = L_route + lambda * L_mlm
    mlm_max_slots: int = 128  # hidden slots reconstructed per batch (a random subset): the 30k-way softmax
    # over every slot would cost more than the encoder on CPU
    dropout: float = 0.1
    train_word_embeddings: bool = False  # frozen vocabulary: a much cheaper optimiser step on CPU
    # training
    epochs: float = 1.0
    batch_size: int = 16
    lr: float = 8e-5
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    mask_start: float = 0.3  # share of hidden slots at the start of the curriculum
    curriculum_frac: float = 0.3  # share of training over which it rises linearly to 1.0
    max_train_queries: int = (
        1000  # a seeded random subset (0 = all): what a shared 2-core CPU trains in 30 min
    )
    max_val_queries: int = 300  # validation subset used to pick the best state (0 = all)
    eval_every: int = 25  # validate (and keep the best state) every N steps; 0 = at each epoch end
    checkpoint_every: int = 20  # steps between resumable checkpoints
    seed: int = 0
    # inference
    inference_batch_size: int = 32

    def __post_init__(self) -> None:
        """Refuse an untrainable (well-typed) config: `ValueError` naming the first problem."""
        refuse_first([
            *at_least(self, 0, "block_size", "mlm_weight", "mlm_max_slots", "lr", "weight_decay", "max_train_queries",
                      "max_val_queries", "eval_every"),  # lr 0: the untrained network, for comparison
            *at_least(self, 3, "max_query_tokens"),  # [CLS], a token, [SEP]
            *at_least(self, 1, "batch_size", "checkpoint_every", "inference_batch_size"),
            *above_zero(self, "epochs"),
            *((0 <= getattr(self, name) <= 1, f"{name} must be in [0, 1], got {getattr(self, name)}")
              for name in ("warmup_frac", "mask_start", "curriculum_frac")),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            # every block's positions follow the query's: the last is max_query_tokens + block_size
            (self.max_query_tokens + self.block_size < ENCODER_POSITIONS, "max_query_tokens + block_size must be "
             f"below {ENCODER_POSITIONS} (the encoder's positions), got {self.max_query_tokens + self.block_size}"),
        ])

    def mask_rate(self, progress: float) -> float:
        """End-masking curriculum: share of each block hidden at `progress` in [0, 1] of training."""
        if self.curriculum_frac <= 0:
            return 1.0
        rise = min(1.0, progress / self.curriculum_frac)
        return self.mask_start + (1.0 - self.mask_start) * rise

    def hidden_slots(self, progress: float) -> int:
        """Hidden slots per block: the last ones, rounded up so at least one is always predicted."""
        if self.block_size == 0:
            return 0
        return max(1, min(self.block_size, round(self.mask_rate(progress) * self.block_size + 0.4999)))
