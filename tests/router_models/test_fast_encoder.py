"""The lean inference forward computes what transformers' BertModel computes."""

from __future__ import annotations

import io

import pytest
import torch

from router_models.encoder import SentenceEncoder, load_encoder
from router_models.fast_encoder import EXACT_GELU, FastEncoder, _PackedWeights, inference_dtype


@pytest.fixture(scope="module")
def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return load_encoder()


def reference(bert: torch.nn.Module, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = bert(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            token_type_ids=torch.zeros_like(mask),
        )
    return out.last_hidden_state


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    embeds = 0.05 * torch.randn(3, 20, 384)
    mask = torch.ones(3, 20, dtype=torch.long)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    positions = torch.cat([torch.arange(8), torch.arange(4, 16)]).expand(3, -1)  # restarting, as in Lookahead
    return embeds, mask, positions


def test_float32_matches_bert_on_real_tokens(bert: torch.nn.Module) -> None:
    embeds, mask, positions = padded_batch()
    expected = reference(bert, embeds, mask, positions)
    got = FastEncoder(bert, torch.float32)(embeds, mask, positions)
    real = mask.bool().unsqueeze(-1)
    torch.testing.assert_close(got.masked_fill(~real, 0), expected.masked_fill(~real, 0), atol=1e-5, rtol=1e-5)


def test_first_only_returns_the_first_row(bert: torch.nn.Module) -> None:
    embeds, mask, positions = padded_batch()
    fast = FastEncoder(bert, torch.float32)
    first = fast(embeds, mask, positions, first_only=True)
    assert first.shape == (3, 1, 384)
    torch.testing.assert_close(first, fast(embeds, mask, positions)[:, :1], atol=1e-5, rtol=1e-5)


def test_bfloat16_stays_close_and_returns_float32(bert: torch.nn.Module) -> None:
    embeds = 0.05 * torch.randn(2, 30, 384)
    mask = torch.ones(2, 30, dtype=torch.long)
    positions = torch.arange(30).expand(2, -1)
    expected = reference(bert, embeds, mask, positions)
    got = FastEncoder(bert, torch.bfloat16)(embeds, mask)
    assert got.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert float(cosine.min()) > 0.999


def test_float16_weights_keep_float32_arithmetic(bert: torch.nn.Module) -> None:
    embeds, mask, positions = padded_batch()
    expected = FastEncoder(bert, torch.float32)(embeds, mask, positions)
    fast = FastEncoder(bert, torch.float16)
    assert fast.dtype == torch.float32 and fast.words.dtype == torch.float32
    got = fast(embeds, mask, positions)
    assert got.dtype == torch.float32
    real = mask.bool()
    cosine = torch.nn.functional.cosine_similarity(got[real], expected[real], dim=-1)
    assert float(cosine.min()) > 0.99999  # float16 weights alone; float16 activations would move it further
    assert not torch.equal(got, expected)  # the weights really are rounded
    first = fast(embeds, mask, positions, first_only=True)
    torch.testing.assert_close(first, got[:, :1])


def test_prepacked_weights_compute_the_linear_layer_and_its_gelu() -> None:
    weight, bias = torch.randn(96, 48), torch.randn(96)
    x = torch.randn(2, 7, 48)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight)  # float32 here: any CPU oneDNN runs on
    plain = torch.nn.functional.linear(x, weight, bias)
    torch.testing.assert_close(_PackedWeights(packed, bias)(x), plain, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        _PackedWeights(packed, bias, EXACT_GELU)(x), torch.nn.functional.gelu(plain), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(  # the exact GELU, not its tanh approximation
        _PackedWeights(packed, bias, EXACT_GELU)(x), torch.nn.functional.gelu(plain, approximate="tanh"), atol=1e-6)


def test_word_lookup_matches_the_embedding_table(bert: torch.nn.Module) -> None:
    ids = torch.tensor([[101, 2023, 2003, 102]])
    fast = FastEncoder(bert, torch.float32)
    torch.testing.assert_close(fast.embed(ids), bert.get_input_embeddings()(ids))


def test_dtype_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_INFERENCE_DTYPE", "float32")
    assert inference_dtype() == torch.float32
    monkeypatch.setenv("SWITCHYARD_INFERENCE_DTYPE", "bfloat16")
    assert inference_dtype() == torch.bfloat16
    monkeypatch.setenv("SWITCHYARD_INFERENCE_DTYPE", "float16")
    assert inference_dtype() == torch.float16
    monkeypatch.setenv("SWITCHYARD_INFERENCE_DTYPE", "half")
    with pytest.raises(ValueError, match="SWITCHYARD_INFERENCE_DTYPE"):
        inference_dtype()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_encoding_shows_progress_only_for_long_inputs_on_a_terminal_when_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = SentenceEncoder(max_length=16)
    texts = [f"question {i}" for i in range(10)]  # 5 batches of 2
    for progress, tty, count, shown in [(True, True, 10, True), (True, True, 8, False), (True, False, 10, False),
                                        (False, True, 10, False)]:
        err = Terminal() if tty else io.StringIO()
        monkeypatch.setattr("sys.stderr", err)
        assert encoder.encode(texts[:count], batch_size=2, progress=progress).shape == (count, 384)
        assert ("encode" in err.getvalue()) == shown, (progress, tty, count)


def test_a_long_text_is_clipped_before_tokenizing_to_the_same_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = SentenceEncoder(max_length=16)
    seen: list[int] = []
    tokenize = encoder.tokenizer

    def recording(texts: list[str], **options: object) -> object:
        seen.extend(len(text) for text in texts)
        return tokenize(texts, **options)

    monkeypatch.setattr(encoder, "tokenizer", recording)
    long = "the quick brown fox jumps over the lazy dog " * 20_000  # ~900 kB
    clipped = encoder.encode([long])
    assert max(seen) <= 16 * 16  # not the whole text: 0.7 s a megabyte, on the gateway's inference thread
    monkeypatch.setattr("router_models.encoder.CHARS_PER_TOKEN_BOUND", 10**9)  # tokenize it all, as before
    assert torch.allclose(clipped, encoder.encode([long]), atol=1e-6)  # truncation kept no more than that
    assert max(seen) == len(long)
