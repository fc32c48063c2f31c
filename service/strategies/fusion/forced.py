"""Forced-token scoring: a member's log-probabilities of a candidate, computed from its prefix cache.

Echo scoring (`echo` with `logprobs`) asks for prompt log-probabilities, and vLLM reads no prefix cache
for such a request: every call recomputes the member's whole context, with full-vocabulary logits at
every position, so a step costs more the longer the answer grows. Forced scoring instead sends, for
each candidate token t_j, the prompt `ids[:j]` with `max_tokens: 1` and asks for the log-probability
of t_j at the next position (`logprob_token_ids`). One request carries all these prompts; each reuses
the cached context and computes logits at one position. vLLM reports these log-probabilities before
any sampling adjustment, so they are the echo's numbers (the end-to-end tests compare them).

The token ids and their texts come from the member's `/tokenize`; token texts are read from the
vocabulary strings (`pieces`), and a candidate whose tokens cannot be read exactly is scored by echo.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from service.strategies.fusion.pieces import token_texts
from service.strategies.fusion.scoring import TokenScores
from service.strategies.fusion.segments import token_starts

MAX_TARGETS = 128  # vLLM's limit on `logprob_token_ids` per request
MAX_TOKENS = 1  # each prompt generates the one token whose log-probabilities it asks for
# From this context length (in the member's tokens) a request is planned and encoded in a worker thread: it
# carries the context once per candidate token (2,048 tokens × 16 × 2 candidates: 65,536 ids, ~0.4 MB).
THREAD_FROM_TOKENS = 2048

Tokenized = tuple[list[int], list[str]]  # token ids, vocabulary strings


class ForcedOff:
    """Backends found to ignore what forced scoring asks for, each until `retry_s` after its last odd reply
    (they score by echo meanwhile): one odd reply, or a backend upgraded since, does not end it for good."""

    def __init__(self, retry_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_s, self.clock = retry_s, clock
        self.until: dict[str, float] = {}

    def __contains__(self, backend: object) -> bool:
        return self.clock() < self.until.get(str(backend), -math.inf)

    def add(self, backend: str) -> None:
        self.until[backend] = self.clock() + self.retry_s


@dataclass(frozen=True, slots=True)
class ForcedPlan:
    """The prompts of one forced-scoring request, and where each candidate's tokens sit among them."""

    prompts: list[list[int]]  # one per candidate token: the ids before it
    targets: list[int]  # the candidate token each prompt scores
    spans: list[tuple[int, list[str]]]  # per candidate: index of its first prompt, its token texts

    def body(self) -> dict[str, Any]:
        return {"prompt": self.prompts, "max_tokens": MAX_TOKENS, "temperature": 0.0, "logprobs": 0,
                "logprob_token_ids": sorted(set(self.targets)), "return_tokens_as_token_ids": True}


def plan(context: str, context_ids: Sequence[int], candidates: Sequence[str],
         tokenized: Sequence[Tokenized]) -> ForcedPlan | None:
    """The request scoring every candidate after `context`, or None where forced scoring cannot be used.

    A candidate's tokens are those of `context + candidate` from the first id where its tokenization
    leaves the context's: the first may straddle the context's end (its start offset is negative),
    as in echo scoring.
    """
    prompts: list[list[int]] = []
    targets: list[int] = []
    spans: list[tuple[int, list[str]]] = []
    for candidate, (ids, strs) in zip(candidates, tokenized, strict=True):
        first = _common_prefix(context_ids, ids)
        texts = token_texts(strs[first:], context + candidate)
        if texts is None or sum(map(len, texts)) < len(candidate):
            return None
        # Tokens that end inside the context (a tokenization that parts from the context's early) are not scored.
        starts = token_starts(texts, len(candidate))
        inside = next((i for i, (start, text) in enumerate(zip(starts, texts, strict=True)) if start + len(text) > 0),
                      len(texts))
        first, texts = first + inside, texts[inside:]
        if first == 0 or not texts:
            return None
        spans.append((len(prompts), texts))
        prompts += [list(ids[:j]) for j in range(first, len(ids))]
        targets += ids[first:]
    if len(set(targets)) > MAX_TARGETS:
        return None
    return ForcedPlan(prompts, targets, spans)


def read(forced: ForcedPlan, candidates: Sequence[str], reply: Any) -> list[TokenScores] | None:
    """Each candidate's token scores from the reply, or None when it lacks what was asked for (a
    backend that ignores `logprob_token_ids`)."""
    choices = sorted(reply.get("choices") or [], key=lambda c: int(c.get("index", 0)))
    if len(choices) != len(forced.prompts):
        return None
    logprobs = []
    for choice, target in zip(choices, forced.targets, strict=True):
        top = ((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0]
        value = top.get(f"token_id:{target}") if isinstance(top, dict) else None
        if value is None:
            return None
        logprobs.append(float(value))
    scores = []
    for (first, texts), candidate in zip(forced.spans, candidates, strict=True):
        scores.append(TokenScores(token_starts(texts, len(candidate)), logprobs[first:first + len(texts)]))
    return scores


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
