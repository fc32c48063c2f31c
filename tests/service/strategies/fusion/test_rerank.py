"""Cool+R over scripted members: each member's own answer runs beside the fused one and stops with it."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import BackendRejected
from service.metrics import Metrics
from service.strategies.base import StrategyDeps
from service.strategies.fusion.config import FusionConfig
from service.strategies.fusion.loop import FUSED, Answer
from service.strategies.fusion.member_set import FusionStats, MemberSet
from service.strategies.fusion.members import Prompt, Sampling
from service.strategies.fusion.request import Plan
from service.strategies.fusion.rerank import rerank
from service.strategies.fusion.strategy import FusionStrategy
from tests.service.strategies.fusion.test_loop import LIKES_X, Hangs, ScriptedMember, rejects, repeat

SOLO = 12  # a solo answer's max_tokens; fused drafts ask for segment_tokens (4)


async def reranked(members: list[ScriptedMember]) -> Answer:
    deps = StrategyDeps(metrics=Metrics(), pool=None)  # type: ignore[arg-type]
    strategy = FusionStrategy("fusion", FusionConfig(members=[m.backend for m in members], segment_tokens=4,
                                                     speculate=False), deps)
    member_set = MemberSet(list(members), timeout_s=0.5, stats=FusionStats(), observe=lambda member, phase: None)
    member_set.prompts.update({m.backend: Prompt("", False) for m in members})
    async with asyncio.timeout(10):  # without cancellation a hung solo would wait on for ever
        return await strategy._reranked(member_set, Plan("cool+r", Sampling(), SOLO, False))


async def test_a_member_dropped_from_the_fused_answer_loses_its_own() -> None:
    writes = ScriptedMember("a", repeat(" x y x y"), LIKES_X)
    hung = Hangs("b", repeat(" a b"), LIKES_X)  # its fused drafts time out, its solo would never end
    answer = await reranked([writes, hung])
    assert answer.text and hung.waiting == 0 and hung.cancelled == 2


async def test_every_solo_answer_stops_when_the_fused_answer_fails() -> None:
    a = Hangs("a", repeat(" x y x y"), LIKES_X, hang_on=(SOLO,))
    b = Hangs("b", repeat(" x y"), LIKES_X, hang_on=(SOLO,), fail_on="draft", failure=rejects(400))
    with pytest.raises(BackendRejected):
        await reranked([a, b])
    assert a.waiting == b.waiting == 0 and a.cancelled == b.cancelled == 1


async def test_the_fused_answer_is_kept_when_a_member_cannot_score_the_longest_answer() -> None:
    a = ScriptedMember("a", repeat(" a b" * SOLO), {"a": -0.1, "b": -0.1}, window=16)
    b = ScriptedMember("b", repeat(" x y" * SOLO), LIKES_X)
    answer = await reranked([a, b])  # a's own answer (24 characters) is longer than a takes
    assert answer.source == FUSED and len(answer.text) <= 20 and answer.finish_reason == "length"


async def test_a_tie_goes_to_the_fused_answer_when_a_member_wrote_the_same_text() -> None:
    members = [ScriptedMember(name, repeat(" x"), {"x": -1.0, "y": -1.0}) for name in ("a", "b")]
    member_set = MemberSet(list(members), timeout_s=1, stats=FusionStats(), observe=lambda member, phase: None)
    member_set.prompts.update({m.backend: Prompt("", False) for m in members})
    fused, own_a, own_b = Answer(FUSED, " x", 1, "stop"), Answer("a", " y", 1, "stop"), Answer("b", " x", 1, "stop")
    assert await rerank(member_set, [fused, own_a, own_b]) is fused  # " x" and " y" score alike
