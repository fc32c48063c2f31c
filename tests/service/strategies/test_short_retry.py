"""The short retry's pieces: what counts as a cut answer, failed retries, and the combined usage."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from service.errors import NoHealthyReplica
from service.strategies.short_retry import RETRY_HEADER, ask_short, combined, was_cut
from service.types import Decision, GatewayRequest, Reply

REQUEST = GatewayRequest(endpoint="chat", public_model="reasoner", body={"messages": []}, stream=False)
DECISION = Decision(backend="qwen", body={"messages": []}, strategy="thinkswitch")


def reply(finish: str | None = "length", status: int = 200, choices: int = 1, **usage: int) -> Reply:
    body = {"choices": [{"index": i, "finish_reason": finish} for i in range(choices)], "usage": usage or None}
    return Reply(status=status, headers={"content-type": "application/json"}, body=orjson.dumps(body),
                 upstream_s=0.5)


def test_only_a_buffered_single_choice_stopped_for_length_is_cut() -> None:
    assert was_cut(reply("length"))
    assert not was_cut(reply("stop"))
    assert not was_cut(reply("length", status=500))
    assert not was_cut(reply("length", choices=2))
    assert not was_cut(Reply(status=200, headers={}, body=b'{"choices": "length"'))  # not JSON
    assert not was_cut(Reply(status=200, headers={}, body=b'["length"]'))  # not an object


class Dispatcher:
    def __init__(self, answer: Reply | Exception) -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []

    async def relay(self, request: GatewayRequest, decision: Decision) -> Reply:
        self.bodies.append(decision.body)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_failed_retry_leaves_the_cut_answer_standing() -> None:
    for answer in (NoHealthyReplica("no replica of 'qwen'"), reply("stop", status=503)):
        dispatcher = Dispatcher(answer)
        short = asyncio.run(ask_short(REQUEST, DECISION, {"short": True}, dispatcher))  # type: ignore[arg-type]
        assert short is None
        assert dispatcher.bodies == [{"short": True}]


def test_the_short_answer_carries_both_calls_usage() -> None:
    cut = reply("length", prompt_tokens=20, completion_tokens=2048, total_tokens=2068)
    short = reply("stop", prompt_tokens=20, completion_tokens=150, total_tokens=170)
    out = combined(cut, short)
    body = orjson.loads(out.body)
    assert body["usage"] == {"prompt_tokens": 40, "completion_tokens": 2198, "total_tokens": 2238}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert out.headers[RETRY_HEADER] == "short"
    assert out.upstream_s == 1.0
