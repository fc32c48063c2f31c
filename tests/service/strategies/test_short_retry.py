"""The short retry's pieces: what counts as a cut answer, failed retries, and the combined usage."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from service.errors import NoHealthyReplica
from service.strategies.short_retry import RETRY_HEADER, ask_short, combined, cut_answer, retrying_stream
from service.types import Decision, GatewayRequest, Reply

REQUEST = GatewayRequest(endpoint="chat", public_model="reasoner", body={"messages": []}, stream=False)
DECISION = Decision(backend="qwen", body={"messages": []}, strategy="thinkswitch", reason="switcher")


def reply(finish: str | None = "length", status: int = 200, choices: int = 1, **usage: int) -> Reply:
    body = {"choices": [{"index": i, "finish_reason": finish} for i in range(choices)], "usage": usage or None}
    return Reply(status=status, headers={"content-type": "application/json"}, body=orjson.dumps(body),
                 upstream_s=0.5)


def test_only_a_buffered_single_choice_stopped_for_length_is_cut() -> None:
    cut = reply("length")
    assert cut_answer(cut) == orjson.loads(cut.body)
    assert cut_answer(reply("stop")) is None
    assert cut_answer(reply("length", status=500)) is None
    assert cut_answer(reply("length", choices=2)) is None
    assert cut_answer(Reply(status=200, headers={}, body=b'{"choices": "length"')) is None  # not JSON
    assert cut_answer(Reply(status=200, headers={}, body=b'["length"]')) is None  # not an object
    assert cut_answer(Reply(status=200, headers={}, stream=stream_of([cut.body]))) is None  # a stream


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
    out = combined(cut, orjson.loads(cut.body), short)
    body = orjson.loads(out.body)
    assert body["usage"] == {"prompt_tokens": 40, "completion_tokens": 2198, "total_tokens": 2238}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert out.headers[RETRY_HEADER] == "short"
    assert out.upstream_s == 1.0


def events(*chunks: dict[str, Any] | str) -> list[bytes]:
    return [b"data: " + (c.encode() if isinstance(c, str) else orjson.dumps(c)) + b"\n\n" for c in chunks]


def chunk(content: str | None, finish: str | None = None, ident: str = "a", role: bool = False,
          field: str = "content") -> dict[str, Any]:
    delta: dict[str, Any] = {field: content} if content is not None else {}
    if role:
        delta["role"] = "assistant"
    return {"id": ident, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def thought(text: str, finish: str | None = None, role: bool = False) -> dict[str, Any]:
    """A long answer's thinking, as vLLM's reasoning parser streams it."""
    return chunk(text, finish, role=role, field="reasoning")


USAGE_A = {"id": "a", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
USAGE_B = {"id": "b", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


async def stream_of(pieces: list[bytes]) -> Any:
    for piece in pieces:
        yield piece


def relay(first: list[bytes], short: list[bytes] | None) -> tuple[bytes, list[bool]]:
    """Run `retrying_stream` over `first` re-cut into 7-byte pieces; `short`: the retry's events or None."""
    outcomes: list[bool] = []
    whole = b"".join(first)
    pieces = [whole[i:i + 7] for i in range(0, len(whole), 7)]  # events split anywhere

    async def ask() -> Reply | None:
        return None if short is None else Reply(status=200, headers={}, stream=stream_of(short))

    async def run() -> bytes:
        long = Reply(status=200, headers={})
        return b"".join([piece async for piece in retrying_stream(stream_of(pieces), ask, outcomes.append, long)])

    return asyncio.run(run()), outcomes


def test_a_streamed_retry_counts_both_answers_as_upstream_time() -> None:
    first = events(thought("Let", role=True), thought(" me", "length"), USAGE_A, "[DONE]")
    long = Reply(status=200, headers={}, upstream_s=1.5)  # its clock stopped as its stream ended

    async def ask() -> Reply:
        short = Reply(status=200, headers={}, stream=stream_of(events(chunk("4", "stop"), "[DONE]")))
        short.release = lambda: setattr(short, "upstream_s", 0.25)  # as the dispatcher's release does
        return short

    async def run() -> None:
        async for _ in retrying_stream(stream_of(first), ask, lambda ok: None, long):
            pass

    asyncio.run(run())
    assert long.upstream_s == 1.75  # not counted as the gateway's own overhead


def test_a_stream_that_ends_by_itself_passes_unchanged() -> None:
    first = events(chunk("Hi", role=True), chunk(" there", "stop"), USAGE_A, "[DONE]")
    out, outcomes = relay(first, events(chunk("never")))
    assert out == b"".join(first) and outcomes == []


@pytest.mark.parametrize("begun", [
    [thought("Let", role=True), chunk(" The answer is", "length")],  # thought, then began to answer
    [thought("Let", role=True), chunk(" The", None), chunk(" answer", "length")],
    [chunk(None, role=True), {"id": "a", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]},
                                                      "finish_reason": "length"}]}],
])
def test_a_cut_stream_that_began_its_answer_is_not_continued(begun: list[dict[str, Any]]) -> None:
    """Part of the answer (content, or a tool call) has reached the client: another cannot follow it."""
    first = events(*begun, USAGE_A, "[DONE]")
    out, outcomes = relay(first, events(chunk("4", "stop"), "[DONE]"))
    assert out == b"".join(first) and outcomes == []


def test_a_cut_stream_continues_with_the_short_answer_under_one_id() -> None:
    first = events(thought("Let", role=True), thought(" me", "length"), USAGE_A, "[DONE]")
    short = events(chunk("4", ident="b", role=True), chunk(".", "stop", ident="b"), USAGE_B, "[DONE]")
    out, outcomes = relay(first, short)
    got = [orjson.loads(e[6:]) if e != b"data: [DONE]" else "[DONE]" for e in out.split(b"\n\n") if e]
    assert got == [thought("Let", role=True), thought(" me"), {**chunk("4"), "id": "a"}, chunk(".", "stop"),
                   {"id": "a", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                                        "total_tokens": 15}}, "[DONE]"]
    assert outcomes == [True]


def test_a_failed_stream_retry_lets_the_cut_answer_end_as_it_came() -> None:
    first = events(thought("Let", role=True), thought(" me", "length"), USAGE_A, "[DONE]")
    out, outcomes = relay(first, None)
    assert out == b"".join(first) and outcomes == [False]


def test_nothing_after_the_cut_is_lost_when_the_stream_ends_unterminated() -> None:
    first = events(thought("Let", role=True), thought(" me", "length"), USAGE_A)
    out, outcomes = relay([*first, b"data: [DONE]"], None)  # the backend left off the last blank line
    assert out == b"".join(first) + b"data: [DONE]\n\n" and outcomes == [False]


def test_a_cut_stream_framed_with_crlf_is_still_retried() -> None:
    first = [event.replace(b"\n\n", b"\r\n\r\n")
             for event in events(thought("Let", role=True), thought(" me", "length"), USAGE_A, "[DONE]")]
    short = events(chunk("4", ident="b", role=True), chunk(".", "stop", ident="b"), USAGE_B, "[DONE]")
    out, outcomes = relay(first, short)
    assert outcomes == [True]
    assert out.startswith(b"data: " + orjson.dumps(thought("Let", role=True)) + b"\n\n")  # relayed before the cut
    assert b'"content":"4"' in out and out.endswith(b"data: [DONE]\n\n")


def test_a_short_reply_that_is_not_a_json_object_leaves_the_cut_answer() -> None:
    cut = reply("length", completion_tokens=2048)
    for body in (b"<html>bad gateway</html>", b"[1, 2]"):
        assert combined(cut, orjson.loads(cut.body), Reply(status=200, headers={}, body=body)) is None


def test_a_short_answer_nested_deeper_than_can_be_written_back_leaves_the_cut_one() -> None:
    cut = reply("length", completion_tokens=2048)
    deep = b"[" * 300 + b"]" * 300
    short = Reply(status=200, headers={}, body=b'{"choices": [{"index": 0, "finish_reason": "stop", "x": '
                  + deep + b'}], "usage": {"completion_tokens": 5}}')
    assert combined(cut, orjson.loads(cut.body), short) is None
