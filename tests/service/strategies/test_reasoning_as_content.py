"""A deepseek-r1 short answer filed by vLLM's reasoning parser as reasoning comes back as content."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from service.strategies.reasoning_as_content import reasoning_as_content
from service.types import Reply


def buffered(message: dict[str, Any], status: int = 200) -> Reply:
    body = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                    "finish_reason": "stop"}]}
    return Reply(status=status, headers={}, body=orjson.dumps(body))


def message_of(reply: Reply) -> dict[str, Any]:
    return orjson.loads(reply.body)["choices"][0]["message"]


def test_a_buffered_answer_filed_as_reasoning_becomes_the_content() -> None:
    # vLLM's deepseek_r1 parser: no </think> in the output, so all of it is reasoning
    assert message_of(reasoning_as_content(buffered({"content": None, "reasoning": "4"}))) == {
        "role": "assistant", "content": "4"}
    assert message_of(reasoning_as_content(buffered({"content": None, "reasoning_content": "4"})))["content"] == "4"


def test_an_answer_without_reasoning_is_left_alone_and_one_split_by_a_think_tag_keeps_its_order() -> None:
    for message in ({"content": "4"}, {"content": None, "reasoning": None}):
        reply = buffered(message)
        assert reasoning_as_content(reply).body == reply.body
    # the model wrote a `</think>` of its own after the prefilled one: vLLM split its text there
    assert message_of(reasoning_as_content(buffered({"content": " So: 4", "reasoning": "The sum is 4"}))) == {
        "role": "assistant", "content": "The sum is 4 So: 4"}
    error = buffered({"content": None, "reasoning": "4"}, status=400)
    assert reasoning_as_content(error).body == error.body


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_streamed_answer_filed_as_reasoning_streams_as_content() -> None:
    deltas = [{"role": "assistant", "content": ""}, {"reasoning": "4"}, {"reasoning": "."},
              {"reasoning": " ok", "content": " So"}, {}]
    chunks = [{"id": "x", "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    data = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    reply = reasoning_as_content(Reply(status=200, headers={}, stream=pieces(data, 9)))

    async def read() -> bytes:
        assert reply.stream is not None
        return b"".join([piece async for piece in reply.stream])

    events = [e[len(b"data: "):] for e in asyncio.run(read()).split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    got = [orjson.loads(e)["choices"][0]["delta"] for e in events[:-1]]
    assert got == [{"role": "assistant", "content": ""}, {"content": "4"}, {"content": "."}, {"content": " ok So"}, {}]


def test_an_answer_nested_deeper_than_can_be_written_back_passes_as_it_came() -> None:
    deep = b"[" * 300 + b"]" * 300  # read by orjson (up to 1,024 levels), not written back (254)
    raw = (b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": null, '
           b'"reasoning": "4", "extra": ' + deep + b'}, "finish_reason": "stop"}]}')
    reply = Reply(status=200, headers={}, body=raw)
    assert reasoning_as_content(reply).body == raw
