"""The question text the learned strategies read: the last user message, its ends when it is very long."""

from __future__ import annotations

import torch

from router_models.encoder import SentenceEncoder, load_tokenizer
from router_models.lookahead.inputs import tokenize_queries
from service.strategies.query import END_CHARS, query_text
from service.types import GatewayRequest


def chat(*messages: dict[str, object]) -> GatewayRequest:
    return GatewayRequest("chat", "auto", {"model": "auto", "messages": list(messages)}, stream=False)


def test_the_last_user_messages_text_parts() -> None:
    request = chat({"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"},
                   {"role": "user", "content": [{"type": "text", "text": "what is"},
                                                {"type": "image_url", "image_url": {"url": "x"}},
                                                {"type": "text", "text": "this?"}]})
    assert query_text(request) == "what is\nthis?"
    assert query_text(chat({"role": "system", "content": "be brief"})) is None
    assert query_text(GatewayRequest("completions", "auto", {"prompt": [1, 2]}, stream=False)) is None


def test_a_very_long_question_keeps_what_the_models_read() -> None:
    words = " ".join(f"w{i}" for i in range(200_000))  # ~1.3 MB
    clipped = query_text(chat({"role": "user", "content": words}))
    assert clipped is not None and len(clipped) == 2 * END_CHARS
    assert clipped.startswith(words[:END_CHARS]) and clipped.endswith(words[-END_CHARS:])
    tokenizer = load_tokenizer()
    assert tokenize_queries(tokenizer, [clipped], 512) == tokenize_queries(tokenizer, [words], 512)  # the router's
    encoder = SentenceEncoder(max_length=512)  # the switcher's, at the longest it may read
    assert torch.allclose(encoder.encode([clipped]), encoder.encode([words]), atol=1e-6)
