"""The step loop with scripted in-process members: selection, stopping, budgets, failures, speculation."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from service.errors import BackendRejected, GatewayError, NoHealthyReplica, Saturated, UpstreamError, UpstreamTimeout
from service.strategies.fusion.loop import FusionLoop, Segment
from service.strategies.fusion.member_set import FusionStats, MemberSet
from service.strategies.fusion.members import Draft, Member, Prompt, Sampling, ScoringMethod
from service.strategies.fusion.scoring import TokenScores
from service.strategies.fusion.segments import token_starts

# Continuations: the answer so far -> (draft text, the member stopped inside it).
Script = Callable[[str], tuple[str, bool]]


def pieces(text: str) -> list[str]:
    """Word tokens with their leading space, like byte-level BPE."""
    return re.findall(r"\s*\S+", text)


class ScriptedMember(Member):
    """A member that drafts from a script and scores a word by a fixed table (unknown words: -3)."""

    def __init__(self, name: str, script: Script, liking: dict[str, float], fail_on: str = "",
                 failure: Callable[[str], Exception] = UpstreamError, window: int | None = None) -> None:
        super().__init__(name, dispatcher=None)  # type: ignore[arg-type]
        self.script, self.liking, self.fail_on, self.failure = script, liking, fail_on, failure
        self.window = window  # refuses (400) an answer longer than this, as vLLM past its context window
        self.scored: list[list[str]] = []

    def _check_window(self, answer: str) -> None:
        if self.window is not None and len(answer) > self.window:
            raise BackendRejected(400, "this model's maximum context length is exceeded")

    def _scores(self, text: str) -> TokenScores:
        words = pieces(text)
        return TokenScores(token_starts(words, len(text)), [self.liking.get(w.strip(), -3.0) for w in words])

    async def draft(self, prompt: Prompt, answer: str, max_tokens: int, sampling: Sampling) -> Draft:
        if self.fail_on == "draft":
            raise self.failure("draft failed")
        self._check_window(answer)
        text, finished = self.script(answer)
        words = pieces(text)
        text = "".join(words[:max_tokens]) if len(words) > max_tokens else text
        return Draft(self.backend, text, self._scores(text), finished and len(words) <= max_tokens, 7)

    async def score(self, prompt: Prompt, answer: str, candidates: list[str],
                    context_tokens: int = 0) -> tuple[list[TokenScores], ScoringMethod]:
        if self.fail_on == "score":
            raise UpstreamError("score failed")
        self._check_window(answer)
        self.scored.append(candidates)
        return [self._scores(c) for c in candidates], "echo"

    async def score_echo(self, prompt: Prompt, answer: str, candidates: list[str]) -> list[TokenScores]:
        self._check_window(answer + max(candidates, key=len))
        return [self._scores(c) for c in candidates]


def repeat(words: str) -> Script:
    return lambda answer: (words, False)


async def write(members: list[ScriptedMember], *, max_tokens: int = 12, segment_tokens: int = 4,
                stop: tuple[str, ...] = (), speculate: bool = True, timeout_s: float = 5
                ) -> tuple[list[Segment], FusionStats]:
    stats = FusionStats()
    member_set = MemberSet(list(members), timeout_s=timeout_s, stats=stats, observe=lambda member, phase: None)
    member_set.prompts.update({m.backend: Prompt("", False) for m in members})
    loop = FusionLoop(member_set, Sampling(stop=list(stop)), max_tokens, segment_tokens, lambda s: None,
                      speculate=speculate)
    return [s async for s in loop.segments()], stats


LIKES_X = {"x": -0.1, "y": -0.1, "y.": -0.1, "a": -1.0, "b": -1.0}


@pytest.mark.parametrize("speculate", [False, True])
async def test_the_segment_both_members_prefer_is_appended(speculate: bool) -> None:
    a = ScriptedMember("a", repeat(" a b a b"), {"a": -0.05, "b": -0.05, "x": -0.5, "y": -0.5})
    b = ScriptedMember("b", repeat(" x y x y"), LIKES_X)
    segments, stats = await write([a, b], speculate=speculate)
    # Average PPL: a's draft exp(.05)+exp(1) > b's exp(.5)+exp(.1); the partial last word is cut off.
    assert segments[0].text == " x y x" and segments[0].member == "b"
    assert a.scored[0] == [" x y x y"] and b.scored[0] == [" a b a b"]  # each scores the others' drafts
    assert sum(s.tokens for s in segments) == 12 and segments[-1].finish_reason == "length"
    assert stats.selected == {"b": stats.steps}


async def test_speculation_does_not_change_the_answer() -> None:
    def growing(answer: str) -> tuple[str, bool]:  # the draft depends on the answer so far
        return (" x y" if len(answer) % 3 else " a b x"), False

    answers = []
    for speculate in (False, True):
        members = [ScriptedMember("a", growing, LIKES_X), ScriptedMember("b", repeat(" y x a b"), LIKES_X)]
        segments, _ = await write(members, speculate=speculate)
        answers.append([(s.text, s.member) for s in segments])
    assert answers[0] == answers[1]


class CharMember(ScriptedMember):
    """A member of another vocabulary: one token per character; it likes its own drafts best."""

    def _scores(self, text: str) -> TokenScores:
        return TokenScores(list(range(len(text))), [-0.5] * len(text))

    async def draft(self, prompt: Prompt, answer: str, max_tokens: int, sampling: Sampling) -> Draft:
        text = self.script(answer)[0][:max_tokens]
        return Draft(self.backend, text, TokenScores(list(range(len(text))), [-0.01] * len(text)), False, 7)


async def test_speculation_keeps_the_budget_of_the_winners_vocabulary() -> None:
    """Both members guess the segment " x y"; a counts it as 2 tokens, b as 4. b wins, so the next drafts
    must have b's budget: those drafted after a's guess (a larger budget) may not be taken."""
    results = []
    for speculate in (False, True):
        a = ScriptedMember("a", lambda answer: ("" if answer else " x y q", False), LIKES_X)
        b = CharMember("b", lambda answer: (" abcdef gh" if answer else " x y z", False), LIKES_X)
        segments, _ = await write([a, b], max_tokens=10, segment_tokens=8, speculate=speculate)
        results.append([(s.text, s.member, s.tokens, s.finish_reason) for s in segments])
    assert results[1] == results[0]
    assert sum(tokens for _, _, tokens, _ in results[1]) == 10 and results[1][-1][3] == "length"


async def test_the_answer_ends_when_the_winner_stops_inside_its_segment() -> None:
    a = ScriptedMember("a", lambda answer: (" x y.", True), LIKES_X)
    b = ScriptedMember("b", repeat(" a b a b"), LIKES_X)
    segments, _ = await write([a, b])
    assert [(s.text, s.finish_reason) for s in segments] == [(" x y.", "stop")]


async def test_the_answer_ends_when_the_previous_winner_stops_at_once() -> None:
    a = ScriptedMember("a", lambda answer: ("", True) if answer else (" x y x", False), LIKES_X)
    b = ScriptedMember("b", repeat(" a b a b"), LIKES_X)
    segments, _ = await write([a, b])
    assert [(s.text, s.member) for s in segments] == [(" x y", "a"), ("", "a")]
    assert segments[-1].finish_reason == "stop"


@pytest.mark.parametrize(("stop", "answer", "tokens"), [
    ("y x", " x ", 2),  # inside the first segment: cut before it (in " y")
    ("x x", " x y ", 3),  # across two segments: its "x", held back from the first, is never sent
    ("y x x", " x ", 2),  # its "y x" held back, a word and more
])
async def test_a_stop_string_ends_the_answer(stop: str, answer: str, tokens: int) -> None:
    members = [ScriptedMember(n, repeat(" x y x y"), LIKES_X) for n in ("a", "b")]
    segments, _ = await write(members, stop=(stop,))
    assert "".join(s.text for s in segments) == answer and segments[-1].finish_reason == "stop"
    assert sum(s.tokens for s in segments) == tokens


async def test_text_that_may_begin_a_stop_string_is_held_back_until_it_cannot() -> None:
    members = [ScriptedMember(n, repeat(" x y x y"), LIKES_X) for n in ("a", "b")]
    plain, _ = await write(members)
    segments, _ = await write(members, stop=("x z",))
    assert [s.text for s in segments[:2]] == [" x y ", "x x y "]  # each segment's last "x" waits for the next
    assert "".join(s.text for s in segments) == "".join(s.text for s in plain)  # and is sent at the end
    assert [s.tokens for s in segments] == [3, 3, 3, 2, 1] and segments[-1].finish_reason == "length"


async def test_a_member_failing_to_score_drops_out_and_the_other_finishes() -> None:
    a = ScriptedMember("a", repeat(" a b a b"), LIKES_X, fail_on="score")
    b = ScriptedMember("b", repeat(" x y x y"), LIKES_X)
    segments, stats = await write([a, b])
    assert stats.dropped == ["a"]
    assert all(s.member == "b" for s in segments) and segments[-1].finish_reason == "length"


async def test_a_member_whose_reply_breaks_the_reading_drops_out() -> None:
    def malformed(message: str) -> Exception:
        return AttributeError("'list' object has no attribute 'get'")  # a 200 reply that is no JSON object

    a = ScriptedMember("a", repeat(" a b a b"), LIKES_X, fail_on="draft", failure=malformed)
    b = ScriptedMember("b", repeat(" x y x y"), LIKES_X)
    segments, stats = await write([a, b])
    assert stats.dropped == ["a"] and segments[-1].finish_reason == "length"


async def test_when_every_member_fails_the_answer_fails() -> None:
    members = [ScriptedMember(n, repeat(" x"), LIKES_X, fail_on="draft") for n in ("a", "b")]
    with pytest.raises(UpstreamError, match="every fusion member failed"):
        await write(members)


@pytest.mark.parametrize("failure", [Saturated, NoHealthyReplica])
async def test_members_that_all_fail_alike_keep_their_status(failure: type[GatewayError]) -> None:
    members = [ScriptedMember(n, repeat(" x"), LIKES_X, fail_on="draft", failure=failure) for n in ("a", "b")]
    with pytest.raises(failure, match="every fusion member failed") as raised:
        await write(members)
    assert type(raised.value) is failure  # a 429 or 503 the client may retry, not a 502


async def test_members_without_a_replica_say_when_the_first_may_serve_again() -> None:
    members = [ScriptedMember(n, repeat(" x"), LIKES_X, fail_on="draft",
                              failure=lambda message, s=seconds: NoHealthyReplica(message, retry_after_s=s))
               for n, seconds in (("a", 3), ("b", 30))]
    with pytest.raises(NoHealthyReplica) as raised:
        await write(members)
    assert raised.value.headers == {"Retry-After": "3"}


async def test_a_failed_solo_answer_keeps_the_member_writing() -> None:
    member = ScriptedMember("a", repeat(" x"), LIKES_X)
    member_set = MemberSet([member], timeout_s=5, stats=FusionStats(), observe=lambda member, phase: None)

    async def fails() -> str:
        raise UpstreamTimeout("a replica of 'a' timed out")

    assert await member_set.call(member, "solo", fails(), solo=True) is None
    assert member_set.active == [member]
    assert await member_set.call(member, "draft", fails()) is None
    assert member_set.active == []


def rejects(status: int) -> Callable[[str], GatewayError]:
    return lambda message: BackendRejected(status, message)


class Hangs(ScriptedMember):
    """A member whose drafts (those of a `max_tokens` in `hang_on`, or all) never come back; counts those waiting."""

    def __init__(self, *args: Any, hang_on: tuple[int, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hang_on, self.waiting, self.cancelled = hang_on, 0, 0

    async def draft(self, prompt: Prompt, answer: str, max_tokens: int, sampling: Sampling) -> Draft:
        if self.hang_on and max_tokens not in self.hang_on:
            return await super().draft(prompt, answer, max_tokens, sampling)
        self.waiting += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.waiting -= 1
        raise AssertionError("unreachable")


async def test_a_member_refusing_the_request_fails_it_at_once_with_the_refusal() -> None:
    hung = Hangs("a", repeat(" x"), LIKES_X)
    refuses = ScriptedMember("b", repeat(" x"), LIKES_X, fail_on="draft", failure=rejects(400))
    with pytest.raises(BackendRejected) as raised:
        await write([hung, refuses])
    assert raised.value.status == 400 and "draft failed" in raised.value.message
    assert hung.cancelled  # the sibling call does not run on


async def test_members_that_all_refuse_alike_keep_the_status() -> None:
    members = [ScriptedMember(n, repeat(" x"), LIKES_X, fail_on="draft", failure=rejects(429)) for n in "ab"]
    with pytest.raises(BackendRejected) as raised:
        await write(members)
    assert raised.value.status == 429 and "every fusion member failed" in raised.value.message


@pytest.mark.parametrize("speculate", [False, True])
async def test_an_answer_past_a_members_context_window_ends_with_length(speculate: bool) -> None:
    a = ScriptedMember("a", repeat(" a b a b"), LIKES_X, window=0)  # refuses anything after the first segment
    b = ScriptedMember("b", repeat(" x y x y"), LIKES_X)
    segments, stats = await write([a, b], speculate=speculate)
    assert [(s.text, s.finish_reason) for s in segments] == [(" x y x", None), ("", "length")]
    assert stats.dropped == []


async def test_members_that_all_time_out_fail_the_answer_as_a_timeout() -> None:
    with pytest.raises(UpstreamTimeout, match="every fusion member failed"):  # a 504, not a 502
        await write([Hangs(n, repeat(" x"), LIKES_X) for n in "ab"], timeout_s=0.01)


async def test_drafts_that_are_all_empty_but_unfinished_end_the_answer_with_length() -> None:
    full = [ScriptedMember(n, lambda answer: ("", False), LIKES_X) for n in "ab"]
    segments, _ = await write(full)
    assert [(s.text, s.finish_reason) for s in segments] == [("", "length")]
    stopped = [ScriptedMember("a", lambda answer: ("", False), LIKES_X), ScriptedMember("b", lambda a: ("", True), {})]
    segments, _ = await write(stopped)
    assert [(s.text, s.finish_reason) for s in segments] == [("", "stop")]


async def test_upstream_time_counts_parallel_member_calls_once() -> None:
    """A speculative draft runs beside the scoring: their time on the backends overlaps and is not summed
    (summed, it exceeded the request's own time and the overhead metric read 0)."""
    stats = FusionStats()
    members = [ScriptedMember(n, repeat(" x"), LIKES_X) for n in ("a", "b")]
    member_set = MemberSet(members, timeout_s=5, stats=stats, observe=lambda member, phase: None)

    async def backend_call(member: Member) -> str:
        await asyncio.sleep(0.05)  # the backend's latency
        return "ok"

    started = asyncio.get_running_loop().time()
    await asyncio.gather(member_set.gather("score", backend_call), member_set.gather("draft", backend_call))
    elapsed = asyncio.get_running_loop().time() - started
    assert 0.05 <= stats.upstream_s <= elapsed


def test_upstream_time_includes_a_call_still_under_way() -> None:
    """A cancelled speculative draft ends a loop turn after the answer is read: its time so far counts."""
    stats = FusionStats()
    stats.call_started()
    time.sleep(0.02)  # the backend's latency
    assert stats.upstream_s >= 0.02
    stats.call_ended()
    closed = stats.upstream_s
    assert closed >= 0.02 and stats.upstream_s == closed
