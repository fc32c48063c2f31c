"""A short-mode answer that vLLM's reasoning parser filed as reasoning, moved back into the content.

In short mode a DeepSeek-R1-family model answers after a closed, empty thinking block that the gateway
prefilled (`<think>\\n\\n</think>\\n\\n`, part of the prompt). vLLM's `deepseek_r1` reasoning parser reads only
the generated text, finds no `</think>` there and returns all of it as `reasoning`, with `content: null`. So
where a choice has reasoning and no content, the reasoning is the answer, and it becomes the content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson

from router_models.thinkswitch.families import REASONING_FIELDS
from service.strategies.sse import DATA, encoded, event_json, events_of, sse
from service.types import Reply

_MARK = b'"reasoning'


def reasoning_as_content(reply: Reply) -> Reply:
    """`reply` with each choice's reasoning put before its content (all of it, where it has none)."""
    if reply.status != 200:
        return reply
    if reply.stream is not None:
        reply.stream = _moving(reply.stream)
        return reply
    if _MARK not in reply.body:
        return reply
    try:
        value = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return reply
    body = encoded(value) if _move(value, "message") else None
    return reply if body is None else replace(reply, body=body)


async def _moving(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for events in events_of(stream):
        yield sse([_moved(event) for event in events])


def _moved(event: bytes) -> bytes:
    if _MARK not in event:
        return event
    value = event_json(event)
    moved = encoded(value) if value is not None and _move(value, "delta") else None
    return event if moved is None else DATA + moved


def _move(value: Any, part: str) -> bool:
    """Move the reasoning of each choice's `part` (message or delta) to the start of its content; whether any
    moved. (After a closed thinking block all generated text is the answer; should the model write a
    `</think>` of its own, vLLM splits the text there, and both halves stay in order.)"""
    moved = False
    choices = value.get("choices") if isinstance(value, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        message = choice.get(part) if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        reasoning = next((message[name] for name in REASONING_FIELDS if message.get(name)), None)
        if isinstance(reasoning, str):
            content = message.get("content")
            message["content"] = reasoning + content if isinstance(content, str) else reasoning
            for name in REASONING_FIELDS:
                message.pop(name, None)
            moved = True
    return moved
