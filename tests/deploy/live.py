"""The gateway run with the configuration the manifests ship, over simulators and a password-protected Redis.

Only the addresses change: backend Services become simulator ports, the Redis Service a local
redis-server. Keys, public paths, secrets-through-environment and model names are the shipped ones.
Two public models with learned strategies are added, their predictors stood in by fixed rules, so
that decisions, the reasoning switch and the Redis decision cache run too.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
import yaml

from service.config import hash_api_key
from tests.harness import GatewayServer, SimProcess, free_port, wait_until

from .tools import K8S, require_tool

SHIPPED_CONFIG = K8S / "base" / "gateway" / "config.yaml"
DEV_API_KEY = "sk-switchyard-dev"


class KeywordRouter:
    """Stand-in Lookahead router: code questions score gemma3 higher, everything else smollm2."""

    kind = "keyword"
    version = "kw1"
    candidates = ["smollm2", "gemma3"]

    def score(self, queries: list[str]) -> np.ndarray:
        return np.array([[-1.0, 2.0] if "code" in q else [1.5, -0.5] for q in queries])  # (N, 2)


class LengthSwitcher:
    """Stand-in ThinkSwitcher: long questions gain from long reasoning, short ones do not."""

    version = "len1"
    default_tau = 0.1
    short_retry = False

    def predict(self, queries: list[str]) -> np.ndarray:
        return np.array([[0.6, 0.9] if len(q.split()) > 5 else [0.9, 0.9] for q in queries])  # (N, 2)


LEARNED_MODELS = [
    {"name": "auto", "strategy": {"kind": "lookahead", "router": "stand-in", "candidates": [
        {"backend": "smollm2", "cost": 0.2}, {"backend": "gemma3", "cost": 1.0}]}},
    {"name": "reasoner", "strategy": {"kind": "thinkswitch", "backend": "smollm2",
                                      "thinking": {"switcher": "stand-in", "family": "qwen3"}}},
]
STAND_INS = {"router": lambda path: KeywordRouter(), "switcher": lambda path: LengthSwitcher()}


@contextlib.contextmanager
def redis_with_password(password: str) -> Iterator[int]:
    """A throw-away redis-server on loopback that demands `password`; yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [require_tool("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--requirepass", password,
         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, what="redis-server")
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def shipped_config(sims: dict[str, SimProcess], redis_port: int) -> dict[str, Any]:
    """The shipped gateway YAML with each backend pointed at the simulator serving its model."""
    text = SHIPPED_CONFIG.read_text().replace("redis://switchyard-redis:6379/", f"redis://127.0.0.1:{redis_port}/")
    assert f":{redis_port}/" in text
    config: dict[str, Any] = yaml.safe_load(text)
    for backend in config["backends"]:
        backend["replicas"] = [sims[backend["model"]].url]
    config["models"] += LEARNED_MODELS
    # The shipped 50 ms suits Redis in the cluster; here it shares two busy cores with vLLM, and a lookup past
    # it would read as an outage, which is not what these tests look for.
    config["cache"]["timeout_s"] = 2.0
    return config


@contextlib.contextmanager
def shipped_gateway(sims: dict[str, SimProcess]) -> Iterator[GatewayServer]:
    password = "live-test-redis-password"
    with pytest.MonkeyPatch.context() as env, redis_with_password(password) as redis_port:
        env.setenv("SWITCHYARD_API_KEY_HASH", hash_api_key(DEV_API_KEY))
        env.setenv("SWITCHYARD_REDIS_PASSWORD", password)
        with GatewayServer(shipped_config(sims, redis_port), loaders=STAND_INS) as server:
            yield server
