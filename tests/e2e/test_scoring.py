"""The scoring call fusion relies on: prompt log-probabilities from real vLLM, through the gateway."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from tests.harness import GatewayServer

TEXT = "The cat sat on the mat because it was warm."
SHUFFLED = "mat because the warm. on cat it sat was The the"


def score(gateway: GatewayServer, model: str, prompt: str) -> dict[str, Any]:
    """`/v1/completions` with `echo`, `logprobs: 1` and `max_tokens: 0`: the prompt's own log-probabilities."""
    body = {"model": model, "prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 0, "temperature": 0}
    response = httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


def mean_logprob(gateway: GatewayServer, model: str, text: str) -> float:
    logprobs = score(gateway, model, text)["choices"][0]["logprobs"]["token_logprobs"]
    values = [lp for lp in logprobs if lp is not None]
    return sum(values) / len(values)


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_echo_returns_prompt_logprobs(cpu_gateway: GatewayServer, model: str) -> None:
    reply = score(cpu_gateway, model, TEXT)
    choice = reply["choices"][0]
    tokens, logprobs = choice["logprobs"]["tokens"], choice["logprobs"]["token_logprobs"]
    assert len(tokens) == len(logprobs) == reply["usage"]["prompt_tokens"]
    assert choice["text"] == TEXT  # the echo only: `max_tokens: 0` adds no generated text
    # The first token has no context, hence no log-probability; every other one is a real one.
    assert logprobs[0] is None
    assert all(isinstance(lp, float) and math.isfinite(lp) and lp <= 0.0 for lp in logprobs[1:])


def test_gemma_echo_starts_with_bos(cpu_gateway: GatewayServer) -> None:
    tokens = score(cpu_gateway, "gemma3", TEXT)["choices"][0]["logprobs"]["tokens"]
    assert tokens[0] == "<bos>"
    assert "".join(tokens[1:]) == TEXT


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_fluent_text_scores_higher_than_shuffled(cpu_gateway: GatewayServer, model: str) -> None:
    """The numbers are real model scores: a sentence beats the same words shuffled."""
    assert mean_logprob(cpu_gateway, model, TEXT) > mean_logprob(cpu_gateway, model, SHUFFLED) + 1.0
