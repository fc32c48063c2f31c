"""The short retry: a long answer cut at `max_tokens` is asked again in short mode.

A reasoning model that runs out of tokens while thinking leaves a cut answer, which is right only now and
then (Qwen3-8B on GSM8K at 2,048 tokens: about a third of the time), while the same question in short mode
is usually right and cheap. So when a long answer the switch chose stops for length, the gateway asks once
more in short mode and sends that answer instead, with the usage of both calls.

Chat replies with one choice are retried, buffered or streamed. A stream is relayed as it comes until its
finish event says "length"; that event goes out without its finish reason, and the short answer's events
follow in the same stream (under the first stream's id, its usage summed with the cut one's). A buffered
reply says so in `x-switchyard-thinking-retry: short`; a stream's headers have left before the cut is seen.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from service.errors import GatewayError
from service.strategies.sse import DATA, encoded, event_json, events_of, sse
from service.throttled_log import ThrottledLog
from service.types import Decision, GatewayRequest, Reply

if TYPE_CHECKING:
    from service.dispatch import Dispatcher

RETRY_HEADER = "x-switchyard-thinking-retry"
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
log = logging.getLogger(__name__)
_trouble = ThrottledLog(log)  # a backend failing every retry logs once per 30 s


def _cut_answer(data: bytes) -> dict[str, Any] | None:
    """The JSON object `data` holds where its only choice stopped at `max_tokens`, else None."""
    if b'"length"' not in data:  # the common case, without parsing
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    choices = value.get("choices") if isinstance(value, dict) else None
    cut = (isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], dict)
           and choices[0].get("finish_reason") == "length")
    return value if cut else None


def cut_answer(reply: Reply) -> dict[str, Any] | None:
    """A buffered chat reply's answer where its only choice stopped at `max_tokens`, else None."""
    return _cut_answer(reply.body) if reply.stream is None and reply.status == 200 else None


async def ask_short(
    request: GatewayRequest, decision: Decision, short_body: dict[str, Any], dispatcher: Dispatcher
) -> Reply | None:
    """The answer to `short_body` from the decided backend, or None where it failed (the cut one stands)."""
    try:
        reply = await dispatcher.relay(request, replace(decision, body=short_body))
    except GatewayError as error:
        _trouble.warning("short retry on %s failed: %s", decision.backend, error, key=decision.backend)
        return None
    if reply.status != 200:
        _trouble.warning("short retry on %s answered %d", decision.backend, reply.status, key=decision.backend)
        reply.close()
        return None
    return reply


def add_usage(usage: Any, first: Any) -> None:
    """Add the token counts of `first` (a usage object) into `usage`, where both have them."""
    if isinstance(usage, dict) and isinstance(first, dict):
        for name in USAGE_FIELDS:
            if isinstance(usage.get(name), int) and isinstance(first.get(name), int):
                usage[name] += first[name]


def combined(cut: Reply, cut_answer: dict[str, Any], short: Reply) -> Reply | None:
    """The short answer, with the cut answer's tokens added to its usage and the retry header set; None
    where the short reply is not a JSON object (the cut answer stands)."""
    try:
        answer = orjson.loads(short.body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        _trouble.warning("short retry answered something other than a JSON object")
        return None
    add_usage(answer.get("usage"), cut_answer.get("usage"))
    body = encoded(answer)
    if body is None:
        _trouble.warning("short retry answered JSON nested too deep to pass on")
        return None
    return replace(short, body=body, headers={**short.headers, RETRY_HEADER: "short"},
                   upstream_s=cut.upstream_s + short.upstream_s)


async def retrying_stream(
    stream: AsyncIterator[bytes],
    ask: Callable[[], Awaitable[Reply | None]],
    answered: Callable[[bool], None],
    reply: Reply,
) -> AsyncIterator[bytes]:
    """Relay a long answer's SSE stream; where it finishes for length with nothing of the answer sent yet
    (only reasoning), continue it with the short answer's events from `ask()` (None: the retry failed, and
    the held finish, usage and [DONE] go out as they came). A cut answer that had begun its content or tool
    calls stands: the client has part of it, and another answer cannot follow it in the same choice.
    `answered(ok)` is told the retry's outcome. The short answer's upstream time is added to `reply`'s, the
    long one's, whose clock stopped when its own stream ended."""
    held: list[bytes] = []  # from the finish event on: the finish, the usage, [DONE]
    begun = False  # content or tool calls relayed
    async for events in events_of(stream):
        if not held:
            cut = next((i for i, event in enumerate(events)
                        if event.startswith(DATA) and _cut_answer(event[len(DATA):])), len(events))
            begun = begun or any(map(_answers, events[:cut + 1]))
            if cut:
                yield sse(events[:cut])
            events = events[cut:]
        held += events
    if not held:
        return
    if begun:
        yield sse(held)
        return
    short = await ask()
    answered(short is not None and short.stream is not None)
    if short is None or short.stream is None:
        yield sse(held)
        return
    try:
        async for piece in _continuation(held, short.stream):
            yield piece
    finally:
        short.close()
        reply.upstream_s += short.upstream_s


def _answers(event: bytes) -> bool:
    """Whether an SSE event carries some of the answer: content or tool calls, not only reasoning."""
    if b'"content"' not in event and b'"tool_calls"' not in event:  # the common reasoning delta, unparsed
        return False
    chunk = event_json(event)
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    deltas = [c.get("delta") for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []
    return any(isinstance(d, dict) and bool(d.get("content") or d.get("tool_calls")) for d in deltas)


async def _continuation(held: list[bytes], stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The cut stream's finish event without its finish reason, then the short answer's events under the cut
    stream's id, its usage summed with the cut one's."""
    finish = event_json(held[0]) or {}
    finish["choices"][0]["finish_reason"] = None
    first_usage = next((chunk["usage"] for chunk in map(event_json, held) if chunk and chunk.get("usage")), None)
    yield DATA + (encoded(finish) or held[0].removeprefix(DATA)) + b"\n\n"
    async for events in events_of(stream):
        out = []
        for event in events:
            value = event_json(event)
            if value is not None:
                value["id"] = finish.get("id", value.get("id"))
                for choice in value.get("choices") or []:
                    if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
                        choice["delta"].pop("role", None)  # the answer's role was said once already
                if value.get("usage"):
                    add_usage(value["usage"], first_usage)
                event = DATA + (encoded(value) or event.removeprefix(DATA))
            out.append(event)
        yield sse(out)
