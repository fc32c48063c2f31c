"""The reasoning-mode switch: exact rewrites per family, the client's own choice, and end to end over simulators."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any, get_args

import httpx
import numpy as np
import pytest

from router_models.thinkswitch.families import FAMILIES, R1_EMPTY_THINKING
from service.config import parse_settings
from service.metrics import Metrics
from service.strategies.base import StrategyDeps
from service.strategies.thinking import (
    Family,
    ThinkingConfig,
    ThinkingSwitch,
    apply_mode,
    client_mode,
    closes_thinking,
    prompt_mode,
)
from service.types import Decision, GatewayRequest, Reply
from tests.harness import GatewayServer, SimProcess, direct_config

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
BODY = {"model": "reasoner", "messages": MESSAGES, "max_tokens": 5}


def config(family: str, **extra: Any) -> ThinkingConfig:
    return ThinkingConfig(switcher="unused", family=family, **extra)  # type: ignore[arg-type]


def test_qwen3_rewrite_keeps_other_template_kwargs() -> None:
    body = {**BODY, "chat_template_kwargs": {"custom": 1}}
    assert apply_mode(body, config("qwen3"), "short") == {
        **BODY, "chat_template_kwargs": {"custom": 1, "enable_thinking": False}}
    assert apply_mode(BODY, config("qwen3"), "long") == {**BODY, "chat_template_kwargs": {"enable_thinking": True}}


def test_deepseek_r1_short_prefills_an_empty_thinking_block() -> None:
    assert apply_mode(BODY, config("deepseek-r1"), "short") == {
        **BODY,
        "messages": [*MESSAGES, {"role": "assistant", "content": "<think>\n\n</think>\n\n"}],
        "continue_final_message": True, "add_generation_prompt": False,
    }
    assert apply_mode(BODY, config("deepseek-r1"), "long") == BODY
    assert R1_EMPTY_THINKING == "<think>\n\n</think>\n\n"


def test_the_config_takes_every_family_the_rewrite_knows_and_custom() -> None:
    assert set(get_args(Family)) == {*FAMILIES, "custom"}


@pytest.mark.parametrize(("extra", "closed"), [
    ({}, False),
    ({"chat_template_kwargs": {"enable_thinking": False}}, False),  # an R1 template ignores it: it thinks
    ({"reasoning_effort": "low"}, False),
    ({"messages": [*MESSAGES, {"role": "assistant", "content": "<think>\nhm\n</think>\n\nIt is 4."}]}, False),
    ({"messages": [*MESSAGES, {"role": "assistant", "content": "<think>\n\n</think>\n\nThe answer"}],
      "continue_final_message": True}, True),  # the client's own short prefill
])
def test_only_a_continued_closed_thinking_block_makes_reasoning_the_answer(extra: dict[str, Any], closed: bool) -> None:
    """A deepseek-r1 short answer's `reasoning` is moved to `content` only after such a prefill: for any other
    body the model really reasoned, and its reasoning must not reach the client as the answer."""
    assert closes_thinking({**BODY, **extra}) is closed
    assert closes_thinking(apply_mode({**BODY, **extra}, config("deepseek-r1"), "short")) is True


def test_reasoning_effort_rewrite() -> None:
    assert apply_mode(BODY, config("reasoning-effort"), "short") == {**BODY, "reasoning_effort": "low"}
    assert apply_mode(BODY, config("reasoning-effort"), "long") == {**BODY, "reasoning_effort": "high"}


CUSTOM = {"short": {"chat_template_kwargs": {"thinking": "off"}},
          "long": {"chat_template_kwargs": {"thinking": "on"}, "thinking_budget": {"tokens": 8000}}}


def test_custom_rewrite_merges_configured_fields() -> None:
    custom = config("custom", short={"chat_template_kwargs": {"thinking": "off"}}, long={"top_k": 20})
    assert apply_mode(BODY, custom, "short") == {**BODY, "chat_template_kwargs": {"thinking": "off"}}
    assert apply_mode(BODY, custom, "long") == {**BODY, "top_k": 20}
    with pytest.raises(ValueError, match="custom"):
        config("custom")


def test_custom_rewrite_keeps_the_clients_other_keys_of_a_configured_object() -> None:
    body = {**BODY, "chat_template_kwargs": {"documents_first": True}}
    assert apply_mode(body, config("custom", **CUSTOM), "long") == {
        **BODY, "chat_template_kwargs": {"documents_first": True, "thinking": "on"},
        "thinking_budget": {"tokens": 8000}}
    assert body == {**BODY, "chat_template_kwargs": {"documents_first": True}}


@pytest.mark.parametrize(("body", "mode"), [
    ({"chat_template_kwargs": {"thinking": "off"}}, "short"),
    ({"chat_template_kwargs": {"thinking": "on"}, "thinking_budget": {"tokens": 8000}}, "long"),
    ({"chat_template_kwargs": {"thinking": "on"}}, "long"),  # part of long mode
    ({"thinking_budget": {"tokens": 500}}, "long"),  # its own value for one of long mode's fields
    ({"chat_template_kwargs": {"documents_first": True}}, None),  # another key of a configured object
    ({"thinking_budget": 500}, "long"),  # a configured field, in another shape
    ({"top_k": 40}, None),
])
def test_custom_family_reads_the_clients_choice_field_by_field(body: dict[str, Any], mode: str | None) -> None:
    assert client_mode({**BODY, **body}, config("custom", **CUSTOM)) == mode


def test_rewrite_never_changes_the_callers_body() -> None:
    body = {**BODY, "chat_template_kwargs": {"a": 1}}
    apply_mode(body, config("qwen3"), "short")
    apply_mode(body, config("deepseek-r1"), "short")
    assert body == {**BODY, "chat_template_kwargs": {"a": 1}}


@pytest.mark.parametrize(("family", "body", "mode"), [
    ("qwen3", {"chat_template_kwargs": {"enable_thinking": False}}, "short"),
    ("qwen3", {"chat_template_kwargs": {"enable_thinking": True}}, "long"),
    ("qwen3", {"chat_template_kwargs": {"other": 1}}, None),
    # the template tests `enable_thinking is false`: any other value leaves the model thinking
    ("qwen3", {"chat_template_kwargs": {"enable_thinking": None}}, "long"),
    ("qwen3", {"chat_template_kwargs": {"enable_thinking": 0}}, "long"),
    ("qwen3", {"chat_template_kwargs": {"enable_thinking": ""}}, "long"),
    ("reasoning-effort", {"reasoning_effort": "low"}, "short"),
    ("reasoning-effort", {"reasoning_effort": "high"}, "long"),
    ("deepseek-r1", {"messages": [*MESSAGES, {"role": "assistant", "content": R1_EMPTY_THINKING}]}, "short"),
    ("deepseek-r1", {"messages": MESSAGES}, None),
    # another family's switch is the client's choice too: the gateway adds nothing of its own
    ("qwen3", {"reasoning_effort": "high"}, "long"),
    ("qwen3", {"messages": [*MESSAGES, {"role": "assistant", "content": "<think>\n"}],
               "continue_final_message": True}, "long"),
    ("deepseek-r1", {"chat_template_kwargs": {"enable_thinking": True}}, "long"),
    ("deepseek-r1", {"reasoning_effort": "low"}, "short"),
    ("reasoning-effort", {"chat_template_kwargs": {"enable_thinking": False}}, "short"),
    ("reasoning-effort", {"messages": [*MESSAGES, {"role": "assistant", "content": R1_EMPTY_THINKING}]}, "short"),
    # Qwen3's soft switches: the latest user or system message that has one, its last one
    ("qwen3", {"messages": [{"role": "user", "content": "Prove it. /think"}]}, "long"),
    ("qwen3", {"messages": [{"role": "user", "content": "/think no, quickly /no_think"}]}, "short"),
    ("qwen3", {"messages": [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "Hi"}]}, "short"),
    ("qwen3", {"messages": [{"role": "user", "content": "/no_think hi"}, {"role": "assistant", "content": "Hi!"},
                            {"role": "user", "content": [{"type": "text", "text": "now think hard /think"}]}]}, "long"),
    ("qwen3", {"messages": [{"role": "user", "content": "see src/think.py and a/thinker"}]}, None),
    ("qwen3", {"messages": [{"role": "user", "content": "a/no_think b/think /no_thinking"}]}, None),
    ("qwen3", {"messages": [{"role": "user", "content": "path a/think, then\n/no_think"}]}, "short"),
    ("reasoning-effort", {"messages": [{"role": "user", "content": "Prove it. /think"}]}, None),  # Qwen3's only
])
def test_the_clients_own_mode_is_recognised(family: str, body: dict[str, Any], mode: str | None) -> None:
    assert client_mode({**BODY, **body}, config(family)) == mode


@pytest.mark.parametrize(("prompt", "mode"), [
    ("<|im_start|>user\n2 + 2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", "short"),
    ("<|im_start|>user\n2 + 2?<|im_end|>\n<|im_start|>assistant\n", None),
    ("Explain </think> tags, then answer:", None),
    ([1, 2, 3], None),
    (["q <think>\n\n</think>"], "short"),  # a list of one, as the prompt itself
    (["a <think>\n\n</think>", "b <think>\n\n</think>\n"], "short"),
    (["a <think>\n\n</think>", "b"], None),  # one prompt thinks: the answer is long mode's
    ([], None),
])
def test_a_completion_prompt_that_closes_its_thinking_is_short(prompt: object, mode: str | None) -> None:
    assert prompt_mode(prompt) == mode


class LengthSwitcher:
    """A stand-in switcher: long questions (more than five words) are predicted to need thinking."""

    version = "len1"
    default_tau = 0.05
    short_retry = False

    def predict(self, queries: list[str]) -> np.ndarray:
        return np.array([[0.6, 0.9] if len(q.split()) > 5 else [0.9, 0.9] for q in queries])


@pytest.fixture(scope="module")
def reasoner(two_sims: list[SimProcess]) -> Iterator[GatewayServer]:
    sim = two_sims[0]
    config_ = direct_config({sim.model: [sim.url]})
    config_["models"].append({"name": "reasoner", "strategy": {
        "kind": "thinkswitch", "backend": sim.model, "thinking": {"switcher": "unused", "family": "qwen3"}}})
    with GatewayServer(config_, loaders={"switcher": lambda path: LengthSwitcher()}) as server:
        yield server


class FailingSwitcher(LengthSwitcher):
    """Fails on any batch holding a question with "boom" in it."""

    def predict(self, queries: list[str]) -> np.ndarray:
        if any("boom" in q for q in queries):
            raise RuntimeError("switcher broke")
        return super().predict(queries)


def reasoner_config(sim: SimProcess, **models: dict[str, Any]) -> dict[str, Any]:
    """A gateway config with one thinkswitch model per keyword (name -> extra thinking config) on `sim`."""
    config_ = direct_config({sim.model: [sim.url]})
    for name, thinking in models.items():
        config_["models"].append({"name": name, "strategy": {
            "kind": "thinkswitch", "backend": sim.model,
            "thinking": {"switcher": "unused", "family": "qwen3", **thinking}}})
    return config_


def ask(gateway: GatewayServer, text: str, **extra: Any) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "reasoner", "messages": [{"role": "user", "content": text}], "max_tokens": 3, **extra})


def test_switch_rewrites_the_request_and_says_so(reasoner: GatewayServer, two_sims: list[SimProcess]) -> None:
    easy = ask(reasoner, "2 + 2?")
    assert easy.headers["x-switchyard-thinking"] == "short"
    assert two_sims[0].last_request()["body"]["chat_template_kwargs"] == {"enable_thinking": False}
    hard = ask(reasoner, "prove that there are infinitely many primes please")
    assert hard.headers["x-switchyard-thinking"] == "long"
    assert two_sims[0].last_request()["body"]["chat_template_kwargs"] == {"enable_thinking": True}
    assert hard.headers["x-switchyard-strategy"] == "thinkswitch"


def test_a_dry_run_decides_the_mode_without_counting_it(reasoner: GatewayServer) -> None:
    shares = {mode: reasoner.metric("switchyard_thinking_mode_total", model="reasoner", mode=mode)
              for mode in ("short", "long")}
    counted = reasoner.metric("switchyard_decisions_total", model="reasoner")
    decision = httpx.post(reasoner.url + "/v1/route", timeout=10, json={
        "model": "reasoner", "messages": [{"role": "user", "content": "2 + 2?"}]}).json()
    assert decision["headers"] == {"x-switchyard-thinking": "short"} and decision["reason"] == "switcher"
    assert {mode: reasoner.metric("switchyard_thinking_mode_total", model="reasoner", mode=mode)
            for mode in ("short", "long")} == shares
    assert reasoner.metric("switchyard_decisions_total", model="reasoner") == counted
    ask(reasoner, "2 + 2?")
    assert reasoner.metric("switchyard_thinking_mode_total", model="reasoner", mode="short") == shares["short"] + 1
    assert reasoner.metric("switchyard_decisions_total", model="reasoner") == counted + 1


def test_client_choice_wins(reasoner: GatewayServer, two_sims: list[SimProcess]) -> None:
    response = ask(reasoner, "prove that there are infinitely many primes please",
                   chat_template_kwargs={"enable_thinking": False})
    assert response.headers["x-switchyard-thinking"] == "short"
    assert two_sims[0].last_request()["body"]["chat_template_kwargs"] == {"enable_thinking": False}
    effort = ask(reasoner, "2 + 2?", reasoning_effort="high")  # another family's switch, relayed as sent
    assert effort.headers["x-switchyard-thinking"] == "long"
    assert "chat_template_kwargs" not in two_sims[0].last_request()["body"]


def test_generated_tokens_are_counted_per_mode(reasoner: GatewayServer) -> None:
    before = reasoner.metric("switchyard_thinking_generated_tokens_total", model="reasoner", mode="short")
    ask(reasoner, "one more easy one")
    with httpx.stream("POST", reasoner.url + "/v1/chat/completions", json={
            "model": "reasoner", "messages": [{"role": "user", "content": "easy"}], "max_tokens": 4,
            "stream": True, "stream_options": {"include_usage": True}}) as response:
        assert response.headers["x-switchyard-thinking"] == "short"
        list(response.iter_lines())
    after = reasoner.metric("switchyard_thinking_generated_tokens_total", model="reasoner", mode="short")
    assert after - before == 3 + 4
    assert reasoner.metric("switchyard_thinking_mode_total", model="reasoner", mode="short") >= 2


def test_a_failing_switcher_falls_back_to_long_mode(two_sims: list[SimProcess]) -> None:
    with GatewayServer(reasoner_config(two_sims[0], reasoner={}),
                       loaders={"switcher": lambda path: FailingSwitcher()}) as gateway:
        response = ask(gateway, "boom: this question breaks the switcher")
        assert response.status_code == 200
        assert response.headers["x-switchyard-thinking"] == "long"
        assert two_sims[0].last_request()["body"]["chat_template_kwargs"] == {"enable_thinking": True}
        assert gateway.metric("switchyard_decisions_total", model="reasoner", reason="fallback") == 1
        assert ask(gateway, "2 + 2?").headers["x-switchyard-thinking"] == "short"  # the others are still switched


def test_models_on_one_switcher_share_cached_predictions_whatever_their_tau(two_sims: list[SimProcess]) -> None:
    config_ = reasoner_config(two_sims[0], reasoner={}, eager={"tau": -1.0})
    with GatewayServer(config_, loaders={"switcher": lambda path: LengthSwitcher()}) as gateway:
        first = ask(gateway, "2 + 2?")
        assert (first.headers["x-switchyard-cache"], first.headers["x-switchyard-thinking"]) == ("miss", "short")
        response = httpx.post(gateway.url + "/v1/chat/completions", timeout=10, json={
            "model": "eager", "messages": [{"role": "user", "content": "2  +\n2?"}], "max_tokens": 3})
        assert (response.headers["x-switchyard-cache"], response.headers["x-switchyard-thinking"]) == ("hit", "long")


class TwoWayRouter:
    kind = "fixed"
    candidates = ["sim-a", "sim-b"]
    version = "fixed1"

    def score(self, queries: list[str]) -> np.ndarray:
        return np.array([[0.9, 0.1] for _ in queries])


def test_auto_applies_the_switch_to_a_reasoning_candidate(two_sims: list[SimProcess]) -> None:
    config_ = direct_config({s.model: [s.url] for s in two_sims})
    config_["models"].append({"name": "auto", "strategy": {
        "kind": "lookahead", "router": "unused",
        "candidates": [{"backend": "sim-a", "thinking": {"switcher": "unused", "family": "reasoning-effort"}},
                       {"backend": "sim-b"}]}})
    loaders = {"router": lambda p: TwoWayRouter(), "switcher": lambda p: LengthSwitcher()}
    with GatewayServer(config_, loaders=loaders) as gateway:
        response = httpx.post(gateway.url + "/v1/chat/completions", json={
            "model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert response.headers["x-switchyard-model"] == "sim-a"
        assert response.headers["x-switchyard-thinking"] == "short"
        assert two_sims[0].last_request()["body"]["reasoning_effort"] == "low"


HARD = "prove that there are infinitely many primes please"


@pytest.fixture(scope="module")
def retrying(two_sims: list[SimProcess]) -> Iterator[GatewayServer]:
    """A thinkswitch model with the short retry on (the simulator always stops at max_tokens)."""
    sim = two_sims[0]
    config_ = direct_config({sim.model: [sim.url]})
    config_["models"].append({"name": "reasoner", "strategy": {
        "kind": "thinkswitch", "backend": sim.model,
        "thinking": {"switcher": "unused", "family": "qwen3", "short_retry": True}}})
    with GatewayServer(config_, loaders={"switcher": lambda path: LengthSwitcher()}) as server:
        yield server


def test_a_cut_long_answer_is_asked_again_in_short_mode(retrying: GatewayServer, two_sims: list[SimProcess]) -> None:
    before = {mode: retrying.metric("switchyard_thinking_generated_tokens_total", model="reasoner", mode=mode)
              for mode in ("short", "long")}
    retries = retrying.metric("switchyard_thinking_short_retries_total", model="reasoner", result="answered")
    response = ask(retrying, HARD)
    assert response.status_code == 200
    assert response.headers["x-switchyard-thinking"] == "long"
    assert response.headers["x-switchyard-thinking-retry"] == "short"
    assert two_sims[0].last_request()["body"]["chat_template_kwargs"] == {"enable_thinking": False}
    usage = response.json()["usage"]
    assert usage["completion_tokens"] == 3 + 3  # both calls are billed
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert retrying.metric("switchyard_thinking_short_retries_total", model="reasoner", result="answered") == (
        retries + 1)  # the module's gateway is shared: counted from before this request
    for mode in ("short", "long"):
        after = retrying.metric("switchyard_thinking_generated_tokens_total", model="reasoner", mode=mode)
        assert after - before[mode] == 3


def test_a_stream_whose_client_asks_no_usage_is_counted_and_gets_none(
        retrying: GatewayServer, two_sims: list[SimProcess]) -> None:
    before = {mode: retrying.metric("switchyard_thinking_generated_tokens_total", model="reasoner", mode=mode)
              for mode in ("short", "long")}
    with httpx.stream("POST", retrying.url + "/v1/chat/completions", json={
            "model": "reasoner", "messages": [{"role": "user", "content": HARD}], "max_tokens": 3,
            "stream": True, "stream_options": {"continuous_usage_stats": True}}) as streamed:
        assert streamed.headers["x-switchyard-thinking"] == "long"
        events = [line[len("data: "):] for line in streamed.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(event) for event in events[:-1]]
    assert events[-1] == "[DONE]" and all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    # the gateway asked for the counts itself, once per stream (continuous stats would put usage on every
    # chunk, which the client, who did not ask for usage, would then get) ...
    assert two_sims[0].last_request()["body"]["stream_options"] == {"include_usage": True}
    for mode in ("short", "long"):  # ... and counted both calls
        after = retrying.metric("switchyard_thinking_generated_tokens_total", model="reasoner", mode=mode)
        assert after - before[mode] == 3


def test_no_retry_for_short_answers_or_the_clients_own_long(retrying: GatewayServer) -> None:
    easy = ask(retrying, "2 + 2?")
    own = ask(retrying, HARD, chat_template_kwargs={"enable_thinking": True})
    assert own.headers["x-switchyard-thinking"] == "long"
    for response in (easy, own):
        assert "x-switchyard-thinking-retry" not in response.headers
    assert own.json()["usage"]["completion_tokens"] == 3


def test_a_cut_long_stream_continues_with_the_short_answer(
        retrying: GatewayServer, two_sims: list[SimProcess]) -> None:
    before = retrying.metric("switchyard_thinking_short_retries_total", model="reasoner", result="answered")
    with httpx.stream("POST", retrying.url + "/v1/chat/completions", json={
            "model": "reasoner", "messages": [{"role": "user", "content": HARD}], "max_tokens": 3,
            "stream": True, "stream_options": {"include_usage": True}}) as streamed:
        assert streamed.headers["x-switchyard-thinking"] == "long"
        events = [line[len("data: "):] for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [json.loads(event) for event in events[:-1]]
    assert len({chunk["id"] for chunk in chunks}) == 1  # one stream to the client
    deltas = [choice["delta"] for chunk in chunks for choice in chunk["choices"]]
    # the cut answer's thinking as reasoning (vLLM's parser), then the short answer as content
    assert [bool(d.get("reasoning")) for d in deltas[:3]] == [True] * 3
    assert sum(bool(d.get("content")) for d in deltas) == 3
    assert sum("role" in d for d in deltas) == 1
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]
    assert finishes == ["length"]  # only the short answer's own end
    assert chunks[-1]["usage"]["completion_tokens"] == 3 + 3
    assert two_sims[0].last_request()["body"]["chat_template_kwargs"] == {"enable_thinking": False}
    after = retrying.metric("switchyard_thinking_short_retries_total", model="reasoner", result="answered")
    assert after - before == 1


def test_the_retry_is_off_by_default_for_a_switcher_not_trained_for_it(
        reasoner: GatewayServer, two_sims: list[SimProcess]) -> None:
    response = ask(reasoner, HARD)
    assert response.headers["x-switchyard-thinking"] == "long"
    assert "x-switchyard-thinking-retry" not in response.headers
    assert two_sims[0].last_request()["body"]["chat_template_kwargs"] == {"enable_thinking": True}


async def test_a_stream_that_may_be_retried_gets_the_short_answers_time_limit_too() -> None:
    config_ = direct_config({"sim-a": ["http://127.0.0.1:9"]})
    config_["backends"][0]["timeouts"] = {"total_s": 30}
    settings = parse_settings(config_)
    deps = StrategyDeps(metrics=Metrics(), pool=None)  # type: ignore[arg-type]  # not reached
    switch = ThinkingSwitch("reasoner", config("qwen3", short_retry=True), deps)
    switch.short_retry = True
    dispatcher = SimpleNamespace(backends={backend.name: backend for backend in settings.backends})

    async def stream() -> AsyncIterator[bytes]:
        yield b"data: [DONE]\n\n"

    request = GatewayRequest(endpoint="chat", public_model="reasoner", body=BODY, stream=True)
    decision = Decision(backend="sim-a", body=BODY, strategy="thinkswitch", reason="switcher",
                        headers={"x-switchyard-thinking": "long"})
    reply = await switch.follow_up(request, decision, Reply(status=200, headers={}, stream=stream(), deadline=100.0),
                                   dispatcher)  # type: ignore[arg-type]
    assert reply.deadline == 100.0 + 30
