"""The causal Lookahead variant on a tiny random-init Llama (the SmolLM2 architecture, scaled down)."""

from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from router_models import load_router
from router_models.data import RoutingTable
from router_models.lookahead.causal import CausalConfig, LookaheadCausal
from router_models.lookahead.causal_router import CausalLookaheadRouter

TINY = {
    "model_type": "llama",
    "vocab_size": 30522,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


def test_joint_sequence_scores_equal_one_sequence_per_candidate() -> None:
    """ID tokens sharing one position and blind to each other give each candidate's own score."""
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in TINY.items() if k != "model_type"}))
    model = LookaheadCausal(CausalConfig(), 3, lm).eval()
    queries = [[5, 6, 7, 8], [9, 10]]
    with torch.no_grad():
        joint = model.score(queries, 3, pad_id=0)
        for b, query in enumerate(queries):
            for t in range(3):
                ids = torch.tensor([[*query, 0]])
                cand = torch.tensor([[-1] * len(query) + [t]])
                out = lm(inputs_embeds=model._embed(ids, cand), output_hidden_states=True)
                alone = model.score_head(out.hidden_states[-1][0, -1])
                assert torch.allclose(joint[b, t], alone, atol=1e-5)


def test_fit_save_load_score_on_a_tiny_sample(sample_table: RoutingTable, tmp_path: Path) -> None:
    config = CausalConfig(
        backbone=TINY, block_size=4, max_query_tokens=16, batch_size=4, max_train_queries=8, epochs=1.0
    )
    router = CausalLookaheadRouter.fit(sample_table, config)
    scores = router.score(["What is 2 + 2?", "Write a sonnet."])
    assert scores.shape == (2, 5) and np.isfinite(scores).all()
    manifest = router.save(tmp_path / "causal")
    loaded = load_router(tmp_path / "causal")
    assert loaded.kind == "lookahead_causal" and loaded.version == manifest.version
    np.testing.assert_allclose(loaded.score(["What is 2 + 2?", "Write a sonnet."]), scores, atol=1e-5)
