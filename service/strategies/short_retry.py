"""The short retry: a long answer cut at `max_tokens` is asked again in short mode.

A reasoning model that runs out of tokens while thinking leaves a cut answer, which is right only now and
then (Qwen3-8B on GSM8K at 2,048 tokens: about a third of the time), while the same question in short mode
is usually right and cheap. So when a long answer the switch chose stops for length, the gateway asks once
more in short mode and sends that answer instead, with the usage of both calls.

Only buffered chat replies with one choice are retried: a stream has already reached the client.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from service.errors import GatewayError
from service.types import Decision, GatewayRequest, Reply

if TYPE_CHECKING:
    from service.dispatch import Dispatcher

RETRY_HEADER = "x-switchyard-thinking-retry"
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
log = logging.getLogger(__name__)


def was_cut(reply: Reply) -> bool:
    """Whether a buffered chat reply's only choice stopped at `max_tokens`."""
    if reply.stream is not None or reply.status != 200 or b'"length"' not in reply.body:
        return False
    try:
        choices = orjson.loads(reply.body).get("choices")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return (isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], dict)
            and choices[0].get("finish_reason") == "length")


async def ask_short(
    request: GatewayRequest, decision: Decision, short_body: dict[str, Any], dispatcher: Dispatcher
) -> Reply | None:
    """The answer to `short_body` from the decided backend, or None where it failed (the cut one stands)."""
    try:
        reply = await dispatcher.relay(request, replace(decision, body=short_body))
    except GatewayError as error:
        log.warning("short retry on %s failed: %s", decision.backend, error)
        return None
    if reply.status != 200:
        log.warning("short retry on %s answered %d", decision.backend, reply.status)
        return None
    return reply


def combined(cut: Reply, short: Reply) -> Reply:
    """The short answer, with the cut call's tokens added to its usage and the retry header set."""
    answer = orjson.loads(short.body)
    first = orjson.loads(cut.body).get("usage") or {}
    usage = answer.get("usage")
    if isinstance(usage, dict):
        for name in USAGE_FIELDS:
            if isinstance(usage.get(name), int) and isinstance(first.get(name), int):
                usage[name] += first[name]
    return replace(short, body=orjson.dumps(answer), headers={**short.headers, RETRY_HEADER: "short"},
                   upstream_s=cut.upstream_s + short.upstream_s)
