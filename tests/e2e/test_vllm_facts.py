"""Facts about the real vLLM servers that the gateway's fusion scoring builds on, checked directly.

To score a segment after a context in one call, fusion sends token ids `ids(context) + ids(segment)` with
`prompt_logprobs` and reads the positions after the context. That needs `/tokenize` ids that vLLM
accepts back as a prompt, and a check that the joint tokenization equals the concatenation.
"""

from __future__ import annotations

import json

import httpx
import pytest

from service.local_backends.specs import GEMMA3, SMOLLM2
from tests.e2e.conftest import Backends

CONTEXT = "Question: What is two plus three?\nAnswer:"
SEGMENT = " Two plus three is five."


def tokenize(url: str, model: str, text: str, special: bool) -> list[int]:
    body = {"model": model, "prompt": text, "add_special_tokens": special}
    response = httpx.post(f"{url}/tokenize", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["tokens"])


@pytest.mark.parametrize("name", [SMOLLM2.name, GEMMA3.name])
def test_segment_logprobs_from_token_ids(backends: Backends, name: str) -> None:
    url = backends.url(name)
    context = tokenize(url, name, CONTEXT, special=True)
    segment = tokenize(url, name, SEGMENT, special=False)
    assert tokenize(url, name, CONTEXT + SEGMENT, special=True) == context + segment  # joint == concatenated
    body = {"model": name, "prompt": context + segment, "max_tokens": 1, "prompt_logprobs": 0,
            "temperature": 0}
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    prompt_logprobs = response.json()["choices"][0]["prompt_logprobs"]
    assert len(prompt_logprobs) == len(context) + len(segment)
    assert prompt_logprobs[0] is None
    # Each position maps the prompt's own token id (as a string) to its log-probability and rank.
    for position, token_id in enumerate(context + segment):
        if position == 0:
            continue
        entry = prompt_logprobs[position][str(token_id)]
        assert entry["logprob"] <= 0.0 and entry["rank"] >= 1
    segment_logprob = sum(prompt_logprobs[len(context) + i][str(t)]["logprob"] for i, t in enumerate(segment))
    assert segment_logprob < 0.0


def test_gemma_adds_bos_and_smollm2_does_not(backends: Backends) -> None:
    gemma = tokenize(backends.url(GEMMA3.name), GEMMA3.name, "Hello world", special=True)
    smol = tokenize(backends.url(SMOLLM2.name), SMOLLM2.name, "Hello world", special=True)
    assert gemma == [2, 9259, 1902]  # <bos> Hello ▁world, as SentencePiece splits it
    assert smol == [19556, 905]  # Hello Ġworld, no BOS in SmolLM2's tokenizer


def test_gemma_tokenizer_was_checked_against_sentencepiece(backends: Backends) -> None:
    manifest = json.loads((backends.cache.model_dir(GEMMA3.name) / "switchyard-model.json").read_text())
    checks = manifest["tokenizer_checks"]
    assert len(checks) >= 8 and all(check["ok"] for check in checks)
    assert all(check["ids"][0] == 2 for check in checks)  # <bos> first
