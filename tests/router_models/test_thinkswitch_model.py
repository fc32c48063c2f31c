"""The head and its loss: the documented form, masking, output ranges."""

from __future__ import annotations

import pytest
import torch

from router_models.thinkswitch.model import (
    AUX_TARGETS,
    ThinkSwitchConfig,
    ThinkSwitchHead,
    aux_loss,
    switch_loss,
)


def test_loss_matches_documented_form() -> None:
    pred = torch.tensor([[0.9, 0.6], [0.5, 0.5]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # question 1: ½(0.01 + 0.16) + λ·((−0.3) − 0)²; question 2: ½(0.25 + 0.25) + λ·(0 − 1)²
    expected = ((0.085 + 2.0 * 0.09) + (0.25 + 2.0 * 1.0)) / 2
    assert switch_loss(pred, target, margin_weight=2.0).item() == pytest.approx(expected)


def test_loss_is_zero_only_for_exact_predictions_and_margin_term_reads_the_gap() -> None:
    target = torch.tensor([[0.25, 0.75]])
    assert switch_loss(target.clone(), target, 1.0).item() == 0.0
    # Same squared errors on each output, one gets the gain's sign wrong: the margin term tells them apart.
    right_gap = torch.tensor([[0.35, 0.85]])
    wrong_gap = torch.tensor([[0.35, 0.65]])
    assert switch_loss(right_gap, target, 0.0).item() == pytest.approx(
        switch_loss(wrong_gap, target, 0.0).item()
    )
    assert switch_loss(wrong_gap, target, 1.0).item() > switch_loss(right_gap, target, 1.0).item()


def test_loss_weights_mask_questions() -> None:
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])  # (K=1, B=2, 2)
    target = torch.ones(1, 2, 2)
    weight = torch.tensor([[0.0, 1.0]])  # the member skips question 0
    assert switch_loss(pred, target, 1.0, weight).item() == 0.0


def test_head_shapes_and_range() -> None:
    config = ThinkSwitchConfig(members=3, folds=3, hidden=8)
    head = ThinkSwitchHead(config).eval()
    embedding, features = torch.randn(5, config.embedding_dim), torch.randn(5, config.n_features)
    members = head.members_forward(embedding, features)
    assert members.shape == (3, 5, 2 + len(AUX_TARGETS))
    out = head(embedding, features)
    assert out.shape == (5, 2) and bool(((out > 0) & (out < 1)).all())
    torch.testing.assert_close(out, members[..., :2].mean(0))


def test_aux_loss_ignores_unknown_targets() -> None:
    pred = torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.5, float("nan"), 0.5], [float("nan")] * 3])
    assert aux_loss(pred, target, torch.ones(2)).item() == 0.0
    target[1, 0] = 1.0  # one known error of 1.0 among three known targets
    assert aux_loss(pred, target, torch.ones(2)).item() == pytest.approx(1 / 3)


def test_offset_logit_gain_fades_where_short_is_sure() -> None:
    config = ThinkSwitchConfig(members=1, folds=1, hidden=4, offset_logit=True, dropout=0.0)
    head = ThinkSwitchHead(config).eval()
    with torch.no_grad():
        head.w2.zero_()
        head.b2[..., 1] = 2.0  # the same logit offset for every question
        gains = []
        for short_logit in (0.0, 8.0):
            head.b2[..., 0] = short_logit
            pred = head(torch.zeros(1, config.embedding_dim), torch.zeros(1, config.n_features))
            gains.append((pred[0, 1] - pred[0, 0]).item())
    assert gains[0] > 0.3 and 0 < gains[1] < 1e-3


@pytest.mark.parametrize("question_offset", [False, True])
def test_the_logit_offset_is_one_constant_per_member_unless_read_from_the_question(question_offset: bool) -> None:
    config = ThinkSwitchConfig(members=3, folds=3, hidden=8, dropout=0.0, question_offset=question_offset)
    head = ThinkSwitchHead(config).eval()
    torch.manual_seed(0)
    out = head.members_forward(torch.randn(5, config.embedding_dim), torch.randn(5, config.n_features))
    offset = torch.logit(out[..., 1]) - torch.logit(out[..., 0])  # (K, B)
    spread = (offset.max(1).values - offset.min(1).values).max().item()
    assert (spread < 1e-4) != question_offset


def test_aux_targets_set_the_head_width() -> None:
    config = ThinkSwitchConfig(members=2, folds=2, hidden=4, aux_targets=["level"])
    head = ThinkSwitchHead(config).eval()
    out = head.members_forward(torch.zeros(3, config.embedding_dim), torch.zeros(3, config.n_features))
    assert out.shape == (2, 3, 3)

