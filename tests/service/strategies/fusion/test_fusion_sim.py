"""The fusion strategy through the real gateway over simulator members: answers, streaming, usage,
and members that fail, hang or break off mid-answer."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.harness import GatewayServer, SimProcess, direct_config

MESSAGES = [{"role": "user", "content": "Write something."}]


def fusion_config(processes: list[SimProcess], **strategy: Any) -> dict[str, Any]:
    config = direct_config({p.model: [p.url] for p in processes})
    config["models"].append({"name": "fusion", "strategy": {
        "kind": "fusion", "members": [p.model for p in processes], "segment_tokens": 4,
        "member_timeout_s": 5.0, **strategy}})
    return config


@contextlib.contextmanager
def fusion_gateway(agree: bool = False, speculate: bool = True, strategy: dict[str, Any] | None = None,
                   **sim_options: Any) -> Iterator[tuple[GatewayServer, list[SimProcess]]]:
    """Two simulator members; unless they `agree`, fb drafts its words one vocabulary step ahead of fa."""
    processes = [SimProcess("fa", **sim_options), SimProcess("fb", first_word=0 if agree else 1, **sim_options)]
    try:
        for process in processes:
            process.start()
        with GatewayServer(fusion_config(processes, speculate=speculate, **(strategy or {}))) as gateway:
            yield gateway, processes
    finally:
        for process in processes:
            process.kill()


def chat(gateway: GatewayServer, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", timeout=30, headers=headers,
                      json={"model": "fusion", "messages": MESSAGES, "max_tokens": 10, **body})


def events(lines: Iterator[str]) -> Iterator[Any]:
    """The JSON payloads of an SSE stream, then the string `[DONE]`."""
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            yield data if data == "[DONE]" else orjson.loads(data)


def test_fused_answer_counts_its_work() -> None:
    with fusion_gateway(speculate=False) as (gateway, processes):
        response = chat(gateway, headers={"X-Request-Id": "fuse-7"})
        assert response.status_code == 200, response.text
        assert response.headers["x-switchyard-strategy"] == "fusion"
        assert response.headers["x-request-id"] == "fuse-7"
        # Every member call forwards the client's id, with a suffix of its own.
        forwarded = [p.last_request()["request_id"] for p in processes]
        assert all(re.fullmatch(r"fuse-7-[0-9a-f]{6}", f) for f in forwarded) and len(set(forwarded)) == 2
        body = response.json()
        assert body["object"] == "chat.completion"
        choice = body["choices"][0]
        # The simulators' log-probabilities favour fb's draft ("quick model answers"), fa's cut is shorter.
        assert choice["message"]["content"].split()[:2] in (["the", "quick"], ["quick", "model"])
        assert choice["finish_reason"] == "length"
        usage, fusion = body["usage"], body["usage"]["fusion"]
        assert usage["completion_tokens"] == 10  # the token budget, not a segment more
        # Two renders, then per step two drafts and two scoring calls.
        assert fusion["steps"] >= 3 and fusion["member_calls"] == 2 + 4 * fusion["steps"]
        assert sum(fusion["selected"].values()) == fusion["steps"] and fusion["dropped"] == []
        assert gateway.metric("switchyard_fusion_steps_total", model="fusion") == fusion["steps"]
        assert gateway.metric("switchyard_fusion_member_calls_total", member="fb", phase="score") == fusion["steps"]


def test_a_backend_without_forced_scoring_is_scored_by_echo() -> None:
    # The simulator's /tokenize has no vocabulary strings, so forced scoring cannot read its tokens.
    with fusion_gateway(speculate=False, strategy={"scoring": "forced"}) as (gateway, _):
        response = chat(gateway)
        assert response.status_code == 200, response.text
        fusion = response.json()["usage"]["fusion"]
        assert fusion["scoring"] == {"echo": 2 * fusion["steps"]} and fusion["dropped"] == []
        # found out once, for every later answer: no forced probe (its /tokenize calls) per request
        assert set(gateway.gateway.strategies["fusion"].no_forced.until) == {"fa", "fb"}  # type: ignore[attr-defined]


def test_stream_sends_segments_as_chunks_then_usage_and_done() -> None:
    with fusion_gateway() as (gateway, _):
        whole = chat(gateway).json()["choices"][0]["message"]["content"]
        body = {"model": "fusion", "messages": MESSAGES, "max_tokens": 10, "stream": True,
                "stream_options": {"include_usage": True}}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            received = list(events(response.iter_lines()))
        assert received[-1] == "[DONE]"
        chunks = received[:-1]
        assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        content = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
        assert len([piece for piece in content if piece]) >= 3  # one chunk per accepted segment
        assert "".join(content) == whole
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["fusion"]["steps"] >= 3


def test_completions_endpoint_and_cool_r_request_option() -> None:
    with fusion_gateway() as (gateway, _):
        response = httpx.post(f"{gateway.url}/v1/completions", timeout=30, json={
            "model": "fusion", "prompt": "Once", "max_tokens": 6, "switchyard_variant": "cool+r"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "text_completion" and body["choices"][0]["text"]
        fusion = body["usage"]["fusion"]
        assert fusion["variant"] == "cool+r" and fusion["chosen"] in ("fusion", "fa", "fb")
        assert gateway.metric("switchyard_fusion_member_calls_total", phase="rerank") == 2


def test_a_member_failing_mid_answer_drops_out_and_the_answer_completes() -> None:
    with fusion_gateway(tokens_per_s=20) as (gateway, (_, fb)):  # 10 steps of 0.2 s: time to break fb
        body = {"model": "fusion", "messages": MESSAGES, "max_tokens": 40, "stream": True,
                "stream_options": {"include_usage": True}}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as response:
            stream = events(response.iter_lines())
            first = next(stream)
            assert first["choices"][0]["delta"]["content"]
            fb.set_fault("error")  # from now on every generation call to fb answers 500
            rest = list(stream)
        assert rest[-1] == "[DONE]"
        usage = rest[-2]["usage"]
        assert usage["completion_tokens"] == 40
        assert usage["fusion"]["dropped"] == ["fb"]
        assert gateway.metric("switchyard_upstream_errors_total", backend="fb") >= 1


def test_a_hung_member_times_out_and_drops_out() -> None:
    with fusion_gateway(strategy={"member_timeout_s": 1.0}) as (gateway, (_, fb)):
        fb.set_fault("hang")
        response = chat(gateway)
        assert response.status_code == 200, response.text
        fusion = response.json()["usage"]["fusion"]
        assert fusion["dropped"] == ["fb"] and fusion["selected"] == {"fa": fusion["steps"]}


def test_the_request_fails_only_when_every_member_fails() -> None:
    with fusion_gateway() as (gateway, processes):
        for process in processes:
            process.set_fault("error")
        response = chat(gateway)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "upstream_error" and "every fusion member failed" in error["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "x", "n": 2}, "n"),
    ({"prompt": "x", "switchyard_variant": "best"}, "switchyard_variant"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
])
def test_requests_fusion_cannot_serve_are_rejected(body: dict[str, Any], param: str) -> None:
    with fusion_gateway() as (gateway, _):
        response = httpx.post(f"{gateway.url}/v1/completions", json={"model": "fusion", **body}, timeout=10)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param


def test_speculative_drafts_do_not_change_the_answer() -> None:
    answers = []
    for speculate in (False, True):
        with fusion_gateway(speculate=speculate) as (gateway, _):
            body = chat(gateway, max_tokens=20).json()
            answers.append((body["choices"][0]["message"]["content"], body["usage"]["fusion"]["steps"]))
            drafts, steps = gateway.metric("switchyard_fusion_member_calls_total", phase="draft"), answers[-1][1]
            if speculate:  # after the first step, every draft is a confirmed guess: two members x two candidates
                assert 2 + 4 * (steps - 1) <= drafts <= 2 + 4 * steps  # the last step's guesses may be cut short
            else:
                assert drafts == 2 * steps
    assert answers[0] == answers[1]


def test_identical_drafts_are_accepted_without_scoring() -> None:
    """Both simulators draft the same words, so no step needs a scoring call."""
    with fusion_gateway(agree=True, speculate=False) as (gateway, _):
        fusion = chat(gateway).json()["usage"]["fusion"]
        assert gateway.metric("switchyard_fusion_member_calls_total", phase="score") == 0
        assert fusion["member_calls"] == 2 + 2 * fusion["steps"]


def test_the_whole_answer_is_bounded_by_total_s() -> None:
    # A step of 4-token drafts at 40 tokens/s takes about half a second: 200 tokens, far past the 3 s limit.
    with fusion_gateway(speculate=False, strategy={"total_s": 3.0}, tokens_per_s=40) as (gateway, _):
        buffered = chat(gateway, max_tokens=200)
        assert buffered.status_code == 504, buffered.text
        assert buffered.json()["error"]["type"] == "timeout_error" and "total_s" in buffered.text
        body = {"model": "fusion", "messages": MESSAGES, "max_tokens": 200, "stream": True}
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as response:
            received = list(events(response.iter_lines()))
        assert received[-1] == "[DONE]" and received[-2]["error"]["type"] == "timeout_error"
        assert any(c.get("choices") and c["choices"][0]["delta"].get("content") for c in received[:-2])
