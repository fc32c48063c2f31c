"""The scoring call fusion relies on: prompt log-probabilities from real vLLM, through the gateway."""

from __future__ import annotations

import math

import httpx
import pytest

from tests.e2e.conftest import Gateway

TEXT = "The cat sat on the mat because it was warm."


def score(gateway: Gateway, model: str, prompt: str | list[int]) -> dict[str, object]:
    body = {"model": model, "prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 0, "temperature": 0}
    response = httpx.post(f"{gateway.api}/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_echo_returns_prompt_logprobs(gateway: Gateway, model: str) -> None:
    reply = score(gateway, model, TEXT)
    choice = reply["choices"][0]  # type: ignore[index]
    tokens, logprobs = choice["logprobs"]["tokens"], choice["logprobs"]["token_logprobs"]
    assert len(tokens) == len(logprobs) == reply["usage"]["prompt_tokens"]  # type: ignore[index]
    assert choice["text"] == TEXT if model == "smollm2" else choice["text"].endswith(TEXT)
    # The first token has no context, hence no log-probability; every other one is a real one.
    assert logprobs[0] is None
    assert all(isinstance(lp, float) and lp <= 0.0 and math.isfinite(lp) for lp in logprobs[1:])
    assert reply["usage"]["completion_tokens"] == 0  # type: ignore[index]


def test_gemma_echo_starts_with_bos(gateway: Gateway) -> None:
    tokens = score(gateway, "gemma3", TEXT)["choices"][0]["logprobs"]["tokens"]  # type: ignore[index]
    assert tokens[0] == "<bos>"
    assert "".join(tokens[1:]).replace("\u2581", " ") == TEXT


def test_fluent_text_scores_higher_than_shuffled(gateway: Gateway) -> None:
    """The numbers are real model scores: a sentence beats the same words shuffled, on both models."""
    shuffled = "mat because the warm. on cat it sat was The the"
    for model in ("smollm2", "gemma3"):
        def mean_logprob(text: str, model: str = model) -> float:
            logprobs = score(gateway, model, text)["choices"][0]["logprobs"]["token_logprobs"]  # type: ignore[index]
            values = [lp for lp in logprobs if lp is not None]
            return sum(values) / len(values)

        assert mean_logprob(TEXT) > mean_logprob(shuffled) + 1.0
