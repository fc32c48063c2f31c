"""The masked Lookahead specifics: curriculum, token layout, losses, resumable training."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from tqdm import tqdm

from router_models.data import RoutingTable
from router_models.encoder import load_tokenizer
from router_models.errors import InputError
from router_models.lookahead import train as lookahead_train
from router_models.lookahead.config import LookaheadConfig
from router_models.lookahead.inputs import IGNORE, build_batch, tokenize_queries, tokenize_responses
from router_models.lookahead.router import LookaheadRouter
from router_models.lookahead.train import CHECKPOINT, train_masked

SPECIAL = {"cls_id": 101, "sep_id": 102, "pad_id": 0, "placeholder_id": 103}


def test_curriculum_hides_the_end_rising_from_30_to_100_percent() -> None:
    config = LookaheadConfig(block_size=10, mask_start=0.3, curriculum_frac=0.4)
    assert config.mask_rate(0.0) == pytest.approx(0.3)
    assert config.mask_rate(0.2) == pytest.approx(0.65)
    assert config.mask_rate(0.4) == config.mask_rate(0.9) == 1.0
    hidden = [config.hidden_slots(p / 10) for p in range(11)]
    assert hidden[0] == 3 and hidden[-1] == 10 and hidden == sorted(hidden)
    assert LookaheadConfig(block_size=0).hidden_slots(0.0) == 0


def test_layout_blocks_positions_and_hidden_end_slots() -> None:
    responses = np.array([[[7, 8, 9], [4, IGNORE, IGNORE]]])  # 1 query, 2 candidates, m = 3
    batch = build_batch([[50, 51]], 2, 3, hidden=1, responses=responses, **SPECIAL)
    # [CLS] q q [SEP] | 7 8 ID1 [SEP] | 4 ID2 ID2 [SEP]
    assert batch.input_ids[0].tolist() == [101, 50, 51, 102, 7, 8, 103, 102, 4, 103, 103, 102]
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7]  # restart at query length
    assert batch.candidate_index[0].tolist() == [-1] * 4 + [-1, -1, 0, -1] + [-1, 1, 1, -1]
    # only the hidden slot with a real token is reconstructed
    assert batch.slot_targets[0].tolist() == [IGNORE] * 6 + [9] + [IGNORE] * 5


def test_inference_layout_hides_every_slot_and_pads() -> None:
    batch = build_batch([[50], [50, 51, 52]], 2, 2, hidden=2, **SPECIAL)
    assert batch.input_ids.shape == (2, 11)
    assert batch.attention_mask.sum(1).tolist() == [9, 11]
    assert (batch.candidate_index >= 0).sum().item() == 8
    assert (batch.slot_targets == IGNORE).all()


def test_mlc_layout_is_the_query_alone() -> None:
    batch = build_batch([[50, 51]], 5, 0, hidden=0, **SPECIAL)
    assert batch.input_ids[0].tolist() == [101, 50, 51, 102]


def test_tokenisation_keeps_head_and_tail_and_caps_responses() -> None:
    tokenizer = load_tokenizer()
    long = "start " + "word " * 200 + "final instruction"
    ids = tokenize_queries(tokenizer, [long], max_tokens=18)[0]
    text = tokenizer.decode(ids)
    assert len(ids) == 16 and text.startswith("start") and text.endswith("instruction")
    responses = tokenize_responses(tokenizer, [["hello there world", ""]], block_size=2)
    assert (
        responses.shape == (1, 2, 2)
        and (responses[0, 0] != IGNORE).all()
        and (responses[0, 1] == IGNORE).all()
    )


@pytest.mark.slow  # a few real training steps of the full-size encoder
def test_training_lowers_the_routing_loss_on_a_fixed_batch(
    sample_table: RoutingTable, tiny_config: LookaheadConfig
) -> None:
    """A few epochs over 8 queries must fit them better than the untrained network does."""
    config = dataclasses.replace(tiny_config, epochs=5, lr=5e-4, eval_every=0)
    table = sample_table.subset(range(8))
    untrained = train_masked(table, dataclasses.replace(config, epochs=0.01, lr=0.0), progress=False)
    trained = train_masked(table, config, progress=False)
    labels = torch.from_numpy(table.labels)

    def loss(model: torch.nn.Module) -> float:
        quality = torch.from_numpy(LookaheadRouter(table.candidates, config, model).score(table.prompts))
        return torch.nn.functional.binary_cross_entropy(quality, labels).item()

    assert loss(trained) < loss(untrained) - 0.02


def test_resume_continues_from_the_checkpoint(
    sample_table: RoutingTable, tiny_config: LookaheadConfig, tmp_path: Path
) -> None:
    table = sample_table.subset(range(16))
    full = train_masked(table, tiny_config, workdir=tmp_path / "a", progress=False)
    saved = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)
    assert saved["step"] == 2
    # a checkpoint of a finished run resumes to the same weights without another step
    resumed = train_masked(table, tiny_config, workdir=tmp_path / "a", resume=True, progress=False)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(InputError, match="written with another lr; remove it or drop --resume"):
        train_masked(
            table,
            dataclasses.replace(tiny_config, lr=1.0),
            workdir=tmp_path / "a",
            resume=True,
            progress=False,
        )


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(
    sample_table: RoutingTable, tiny_config: LookaheadConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = sample_table.subset(range(16))
    config = dataclasses.replace(tiny_config, epochs=2.0)  # two steps, a checkpoint after each
    full = train_masked(table, config, progress=False)

    class StopsInStepTwo(tqdm):  # type: ignore[type-arg]
        steps = 0

        def update(self, n: float | None = 1) -> bool | None:
            StopsInStepTwo.steps += 1
            if StopsInStepTwo.steps == 2:  # after step 1's checkpoint, before step 2's
                raise KeyboardInterrupt
            return super().update(n)

    monkeypatch.setattr(lookahead_train, "tqdm", StopsInStepTwo)
    with pytest.raises(KeyboardInterrupt):
        train_masked(table, config, workdir=tmp_path, progress=False)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 1
    monkeypatch.undo()
    resumed = train_masked(table, config, workdir=tmp_path, resume=True, progress=False)
    # Equal up to the float noise of CPU kernels run again (the same run twice differs by ~1e-6); without the
    # saved random state, dropout draws other masks and the weights part by ~1e-4.
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-5), (name, float((a - b).abs().max()))


class Payload:
    """Unpickling this creates `marker`: what a checkpoint loaded without `weights_only` would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_resume_loads_tensors_and_plain_values_only(
    sample_table: RoutingTable, tiny_config: LookaheadConfig, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "a").mkdir()
    torch.save({"config": dataclasses.asdict(tiny_config), "payload": Payload(marker)}, tmp_path / "a" / CHECKPOINT)
    with pytest.raises(InputError, match="holds more than tensors and plain values; remove it or drop --resume"):
        train_masked(sample_table.subset(range(8)), tiny_config, workdir=tmp_path / "a", resume=True, progress=False)
    assert not marker.exists()
