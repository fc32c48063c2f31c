"""The fused answer in OpenAI shapes: a completion object, or SSE chunks as segments are accepted.

Usage counts the final answer's tokens as the members that wrote it tokenized them, plus the
`usage.fusion` extension: `{variant, steps, member_calls, selected: {member: steps won},
scoring: {method: scoring calls}, dropped, step_seconds_mean}`; for `cool+r` also `chosen` (`fusion`
or the member whose own answer won).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from service.strategies.fusion.member_set import FusionStats
from service.types import Endpoint


class AnswerFormat:
    """Renders one answer's objects for the chat or completions endpoint under one id."""

    def __init__(self, endpoint: Endpoint, model: str) -> None:
        self.chat = endpoint == "chat"
        self.model = model
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def completion(self, text: str, finish_reason: str, usage: dict[str, Any]) -> bytes:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return orjson.dumps({"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                             "created": self.created, "model": self.model, "choices": [choice], "usage": usage})

    def chunk(self, text: str, finish_reason: str | None = None, *, first: bool = False) -> bytes:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return self._event([choice])

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        return self._event([], usage)

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                                "created": self.created, "model": self.model, "choices": choices}
        if usage is not None:
            body["usage"] = usage
        return b"data: " + orjson.dumps(body) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def usage(stats: FusionStats, completion_tokens: int, variant: str, chosen: str | None = None) -> dict[str, Any]:
    fusion: dict[str, Any] = {
        "variant": variant,
        "steps": stats.steps,
        "member_calls": stats.member_calls,
        "selected": dict(stats.selected),
        "scoring": dict(stats.scoring),
        "dropped": list(stats.dropped),
        "step_seconds_mean": round(sum(stats.step_seconds) / len(stats.step_seconds), 4)
        if stats.step_seconds else 0.0,
    }
    if chosen is not None:
        fusion["chosen"] = chosen
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": stats.prompt_tokens + completion_tokens, "fusion": fusion}
