"""The `lookahead` strategy: the decision rule, and `auto` end to end over simulators with a stand-in router."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from service.strategies.lookahead import as_quality, choose
from tests.harness import REPO, GatewayServer, RedisServer, SimProcess, direct_config, free_port, wait_until


def always(index: int) -> bool:
    return True


def test_pure_quality_takes_the_best() -> None:
    assert choose([0.2, 0.9, 0.5], [1, 1, 1], 0.0, always, 0.1) == (1, "quality")


def test_tradeoff_takes_the_cheapest_within_the_margin() -> None:
    quality, costs = [0.80, 0.90, 0.70], [1.0, 10.0, 0.5]
    assert choose(quality, costs, 0.05, always, 0.1) == (1, "quality")
    assert choose(quality, costs, 0.15, always, 0.1) == (0, "cost")
    assert choose(quality, costs, 0.25, always, 0.1) == (2, "cost")


def test_load_moves_to_the_next_candidate_within_the_load_margin() -> None:
    quality, costs = [0.85, 0.90, 0.50], [1, 1, 1]
    assert choose(quality, costs, 0.0, lambda i: i != 1, 0.1) == (0, "load")
    # Nothing acceptable can serve: keep the best and let the dispatcher answer 429.
    assert choose(quality, costs, 0.0, lambda i: i == 2, 0.1) == (1, "quality")


def test_without_scores_a_busy_cheapest_candidate_gives_way_to_the_next_cheapest() -> None:
    # No text to score (or the router failed): every quality is 0, and cost alone decides.
    assert choose([0.0] * 3, [1.0, 0.5, 0.2], 1.0, lambda i: i != 2, 1.0) == (1, "load")


def test_logits_become_probabilities() -> None:
    assert as_quality([0.1, 0.7]) == [0.1, 0.7]
    q = as_quality([-2.0, 0.0, 3.0])
    assert q[1] == 0.5 and q[0] < 0.5 < q[2]


class KeywordRouter:
    """A stand-in router: code questions score sim-b higher, everything else sim-a. Records batch sizes."""

    kind = "keyword"
    candidates = ["sim-a", "sim-b"]
    version = "kw1"

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def score(self, queries: list[str]) -> np.ndarray:
        self.gate.wait(timeout=10)
        self.batches.append(len(queries))
        return np.array([[-1.0, 2.0] if "code" in q else [1.5, -0.5] for q in queries])


def auto_config(two_sims: list[SimProcess], **cache: Any) -> dict[str, Any]:
    config = direct_config({s.model: [s.url] for s in two_sims}, cache=cache)
    config["models"].append({"name": "auto", "strategy": {
        "kind": "lookahead", "router": "unused-path",
        "candidates": [{"backend": "sim-a", "cost": 1.0}, {"backend": "sim-b", "cost": 0.2}]}})
    return config


@pytest.fixture
def router() -> KeywordRouter:
    return KeywordRouter()


@pytest.fixture
def auto_gateway(two_sims: list[SimProcess], router: KeywordRouter) -> Iterator[GatewayServer]:
    with GatewayServer(auto_config(two_sims), loaders={"router": lambda path: router}) as server:
        yield server


def ask(gateway: GatewayServer, text: str, model: str = "auto", **extra: Any) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 2, **extra})


def test_auto_routes_by_predicted_quality(auto_gateway: GatewayServer) -> None:
    response = ask(auto_gateway, "write code to sort a list")
    assert response.headers["x-switchyard-model"] == "sim-b"
    assert response.headers["x-switchyard-strategy"] == "lookahead"
    assert response.json()["model"] == "sim-b"
    assert ask(auto_gateway, "tell me a story").headers["x-switchyard-model"] == "sim-a"


def test_decisions_are_cached(auto_gateway: GatewayServer) -> None:
    assert ask(auto_gateway, "a fresh question").headers["x-switchyard-cache"] == "miss"
    assert ask(auto_gateway, "a  fresh question ").headers["x-switchyard-cache"] == "hit"


def test_route_endpoint_shows_every_score_without_generating(auto_gateway: GatewayServer,
                                                            two_sims: list[SimProcess]) -> None:
    before = two_sims[0].last_request()
    counted = auto_gateway.metric("switchyard_decisions_total", model="auto")
    decision = httpx.post(auto_gateway.url + "/v1/route", json={
        "model": "auto", "messages": [{"role": "user", "content": "what is love"}]}).json()
    assert decision["backend"] == "sim-a" and decision["reason"] == "quality"
    assert set(decision["scores"]) == {"sim-a", "sim-b"}
    assert decision["scores"]["sim-a"] > decision["scores"]["sim-b"]
    assert two_sims[0].last_request() == before
    assert auto_gateway.metric("switchyard_decisions_total", model="auto") == counted  # a dry run is not served
    assert ask(auto_gateway, "what is love").headers["x-switchyard-model"] == "sim-a"
    assert auto_gateway.metric("switchyard_decisions_total", model="auto", backend="sim-a") >= 1


@pytest.mark.parametrize("how", ["suffix", "body"])
def test_client_tradeoff_takes_the_cheaper_model(auto_gateway: GatewayServer, how: str) -> None:
    # sim-a ≈ 0.82, sim-b ≈ 0.38 for a non-code question; sim-b is five times cheaper.
    if how == "suffix":
        response = ask(auto_gateway, "plain question", model="auto:0.5")
    else:
        response = ask(auto_gateway, "plain question", switchyard_tradeoff=0.5)
    assert response.status_code == 200
    assert response.headers["x-switchyard-model"] == "sim-b"
    assert ask(auto_gateway, "plain question", model="auto:0.3").headers["x-switchyard-model"] == "sim-a"


@pytest.mark.parametrize("model", ["auto:lots", "auto:1.5", "auto:nan"])
def test_a_trade_off_suffix_that_is_no_number_in_0_1_is_400(auto_gateway: GatewayServer, model: str) -> None:
    response = ask(auto_gateway, "plain question", model=model)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model" and "must be a number in [0, 1]" in response.text


def test_concurrent_requests_are_batched(auto_gateway: GatewayServer, router: KeywordRouter) -> None:
    router.gate.clear()  # hold the router so requests pile up behind the first batch
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(ask, auto_gateway, f"question number {i}") for i in range(8)]
        wait_until(lambda: auto_gateway.metric("switchyard_in_flight_requests", model="auto") == 8,
                   what="requests waiting on the router")
        router.gate.set()
        assert all(f.result().status_code == 200 for f in futures)
    assert max(router.batches) > 1


def test_busy_best_candidate_overflows_to_the_next(two_sims: list[SimProcess], router: KeywordRouter) -> None:
    config = auto_config(two_sims)
    config["models"][-1]["strategy"]["load_margin"] = 0.5
    config["backends"][0]["replicas"] = [f"http://127.0.0.1:{free_port()}"]  # sim-a's only replica is down
    with GatewayServer(config, loaders={"router": lambda path: router}) as gateway:
        response = ask(gateway, "story time")
        assert response.status_code == 200
        assert response.headers["x-switchyard-model"] == "sim-b"
        assert gateway.metric("switchyard_decisions_total", model="auto", reason="load") == 1


def test_redis_outage_degrades_to_uncached_routing(two_sims: list[SimProcess], router: KeywordRouter,
                                                   redis_server: RedisServer) -> None:
    # Redis is asked again at once after a failure (the retry window is the cache tests' business).
    config = auto_config(two_sims, redis_url=redis_server.url, timeout_s=1.0, retry_after_s=0)
    with GatewayServer(config, loaders={"router": lambda path: router}) as gateway:
        assert ask(gateway, "cache me").headers["x-switchyard-cache"] == "miss"
        assert ask(gateway, "cache me").headers["x-switchyard-cache"] == "hit"
        redis_server.stop()
        for _ in range(3):
            response = ask(gateway, "cache me")
            assert response.status_code == 200
            assert response.headers["x-switchyard-cache"] == "error"
        redis_server.start()  # an empty Redis: the next lookup misses, then hits resume
        assert ask(gateway, "cache me").headers["x-switchyard-cache"] == "miss"
        assert ask(gateway, "cache me").headers["x-switchyard-cache"] == "hit"
        assert gateway.metric("switchyard_cache_requests_total", result="error") == 3


def test_a_malformed_cache_entry_is_decided_again(two_sims: list[SimProcess], router: KeywordRouter,
                                                  redis_server: RedisServer) -> None:
    config = auto_config(two_sims, redis_url=redis_server.url, timeout_s=2.0)
    with GatewayServer(config, loaders={"router": lambda p: router}) as gateway:
        assert ask(gateway, "write code").headers["x-switchyard-cache"] == "miss"
        client = redis.Redis.from_url(redis_server.url)
        wait_until(lambda: client.keys("*"), what="the decision written")  # after the answer, not before it
        (key,) = client.keys("*")
        client.set(key, b'{"quality": [0.5, 0.2, 0.1]}')  # three columns for two candidates
        response = ask(gateway, "write code")
        assert response.status_code == 200, response.text
        assert response.headers["x-switchyard-cache"] == "miss"
        assert response.headers["x-switchyard-model"] == "sim-b"
        wait_until(lambda: client.get(key) != b'{"quality": [0.5, 0.2, 0.1]}')  # overwritten
        assert ask(gateway, "write code").headers["x-switchyard-cache"] == "hit"


def test_shared_redis_shares_decisions_across_gateways(two_sims: list[SimProcess], router: KeywordRouter,
                                                       redis_server: RedisServer) -> None:
    config = auto_config(two_sims, redis_url=redis_server.url, timeout_s=2.0)
    with GatewayServer(config, loaders={"router": lambda p: router}) as one, \
            GatewayServer(config, loaders={"router": lambda p: router}) as two:
        assert ask(one, "shared question").headers["x-switchyard-cache"] == "miss"
        with redis.Redis.from_url(redis_server.url) as client:  # written after the answer, not before it
            wait_until(lambda: client.keys("*"), what="the decision written")
        assert ask(two, "shared question").headers["x-switchyard-cache"] == "hit"


def test_models_on_one_router_share_cached_quality_whatever_their_costs(two_sims: list[SimProcess],
                                                                      router: KeywordRouter) -> None:
    config = auto_config(two_sims)
    auto = config["models"][-1]
    config["models"].append({"name": "thrifty", "strategy": {**auto["strategy"], "tradeoff": 0.9, "candidates": [
        {"backend": "sim-a", "cost": 5.0}, {"backend": "sim-b", "cost": 0.1}]}})
    config["models"].append({"name": "swapped", "strategy": {**auto["strategy"], "candidates": [
        {"backend": "sim-b"}, {"backend": "sim-a"}]}})  # other columns in another order: other vectors
    with GatewayServer(config, loaders={"router": lambda path: router}) as gateway:
        assert ask(gateway, "tell me a story").headers["x-switchyard-cache"] == "miss"
        thrifty = ask(gateway, "tell me a story", model="thrifty")
        assert thrifty.headers["x-switchyard-cache"] == "hit"
        assert thrifty.headers["x-switchyard-model"] == "sim-b"  # its own costs and tradeoff still decide
        swapped = ask(gateway, "tell me a story", model="swapped")
        assert swapped.headers["x-switchyard-cache"] == "miss"
        assert swapped.headers["x-switchyard-model"] == "sim-a"


def test_auto_with_the_shipped_simulator_router(two_sims: list[SimProcess]) -> None:
    """The real artifact through the real loader (`router_models.load_router`), as deploy/local/sim.yaml uses it."""
    config = auto_config(two_sims)
    config["models"][-1]["strategy"]["router"] = str(REPO / "deploy" / "local" / "artifacts" / "sim-router")
    with GatewayServer(config) as gateway:
        decision = httpx.post(gateway.url + "/v1/route", json={
            "model": "auto", "messages": [{"role": "user", "content": "Write a Python function to reverse a list"}]})
        assert decision.status_code == 200, decision.text
        scores = decision.json()["scores"]
        assert set(scores) == {"sim-a", "sim-b"} and all(0.0 <= v <= 1.0 for v in scores.values())
        response = ask(gateway, "Write a Python function to reverse a list")
        assert response.status_code == 200
        assert response.headers["x-switchyard-model"] == decision.json()["backend"]


class BrokenRouter(KeywordRouter):
    """Fails on any batch holding a question with "boom" in it."""

    def score(self, queries: list[str]) -> np.ndarray:
        if any("boom" in q for q in queries):
            raise RuntimeError("router broke")
        return super().score(queries)


def test_a_failing_router_falls_back_to_the_default_candidate(two_sims: list[SimProcess]) -> None:
    with GatewayServer(auto_config(two_sims), loaders={"router": lambda path: BrokenRouter()}) as gateway:
        response = ask(gateway, "boom: this question breaks the router")
        assert response.status_code == 200
        assert response.headers["x-switchyard-model"] == "sim-b"  # the cheapest
        assert gateway.metric("switchyard_decisions_total", model="auto", reason="fallback") == 1
        assert ask(gateway, "tell me a story").headers["x-switchyard-model"] == "sim-a"  # routed again


def test_route_endpoint_takes_completion_bodies(auto_gateway: GatewayServer) -> None:
    decision = httpx.post(auto_gateway.url + "/v1/route", json={"model": "auto", "prompt": "write code now"})
    assert decision.status_code == 200, decision.text
    assert decision.json()["backend"] == "sim-b"  # the prompt was read as the query
    bad = httpx.post(auto_gateway.url + "/v1/route", json={"model": "auto"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


def test_the_router_is_loaded_and_run_on_the_gateways_inference_thread(two_sims: list[SimProcess]) -> None:
    """One thread that is not the event loop's: PyTorch then keeps one team of OpenMP threads (service.inference)."""
    threads: dict[str, str] = {}

    class ThreadRecordingRouter(KeywordRouter):
        def score(self, queries: list[str]) -> np.ndarray:
            threads["score"] = threading.current_thread().name
            return super().score(queries)

    def load(path: str) -> KeywordRouter:
        threads["load"] = threading.current_thread().name
        return ThreadRecordingRouter()

    with GatewayServer(auto_config(two_sims), loaders={"router": load}) as gateway:
        assert ask(gateway, "write code").headers["x-switchyard-model"] == "sim-b"
    assert threads["load"] == threads["score"] and threads["load"].startswith("inference")
