"""The simulator: its run-time fault switch (`POST /sim/fault`) and the vLLM answer shapes it copies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.sim.server import SIMULATOR, SimSettings, build_sim_app


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_sim_app(SimSettings(fault="error", fault_rate=0.5)))) as test_client:
        yield test_client


async def test_a_fault_is_switched_at_run_time(client: TestClient) -> None:
    response = await client.post("/sim/fault", json={"mode": "hang", "rate": 0.25})
    assert response.status == 200 and await response.json() == {"mode": "hang", "rate": 0.25}
    settings = client.app[SIMULATOR].settings
    assert (settings.fault, settings.fault_rate) == ("hang", 0.25)


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'"error"', b'{"mode": "error", "rate": "x"}',
                                  b'{"mode": "error", "rate": 5}', b'{"mode": "error", "rate": true}',
                                  b'{"mode": "explode"}', b'{"mode": ["error"]}'])
async def test_a_bad_body_is_a_400_that_changes_nothing(client: TestClient, body: bytes) -> None:
    response = await client.post("/sim/fault", data=body)
    assert response.status == 400
    assert isinstance((await response.json())["error"], str)
    settings = client.app[SIMULATOR].settings
    assert (settings.fault, settings.fault_rate) == ("error", 0.5)


@pytest.fixture
async def healthy() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_sim_app(SimSettings(model="m")))) as test_client:
        yield test_client


async def test_n_choices_buffered_and_streamed_as_vllm_gives_them(healthy: TestClient) -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "n": 2}
    answer = await (await healthy.post("/v1/chat/completions", json=chat)).json()
    assert [c["index"] for c in answer["choices"]] == [0, 1]
    assert answer["usage"]["completion_tokens"] == 6
    streamed = await (await healthy.post("/v1/chat/completions", json={**chat, "stream": True})).text()
    chunks = [orjson.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    assert [c["choices"][0]["index"] for c in chunks] == [0, 1] * 3
    assert all(isinstance(c["created"], int) for c in chunks)
    for prompts, prompt_tokens in ((["a b", "c d e"], 5), ([[1, 2], [3, 4, 5]], 5)):  # texts, token ids
        texts = {"model": "m", "prompt": prompts, "max_tokens": 1, "n": 2}
        answer = await (await healthy.post("/v1/completions", json=texts)).json()
        assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
        assert answer["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 4, "total_tokens": 9}


async def test_max_tokens_0_generates_nothing(healthy: TestClient) -> None:
    scoring = {"model": "m", "prompt": "the quick fox", "max_tokens": 0, "echo": True, "logprobs": 1}
    answer = await (await healthy.post("/v1/completions", json=scoring)).json()
    assert answer["choices"][0]["text"] == "the quick fox" and answer["usage"]["completion_tokens"] == 0
