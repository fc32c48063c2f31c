"""The Cool-Fusion step loop: draft in parallel, score in parallel, append the best segment.

One step, with N active members:
1. every member drafts `segment_tokens` tokens after the shared answer (N calls, in parallel);
2. every member scores the other members' drafts after the answer (N calls, one list of prompts each,
   in parallel); a member's score of its own draft comes free with the draft's log-probabilities;
3. each draft is cut at its last word boundary every member's tokenizer agrees on, the perplexity of
   the cut segment is averaged over members, and the lowest wins.
The answer ends when the winner stopped inside its segment, when the previous winner now stops at
once, at a stop string, or at `max_tokens`. A member that fails or times out drops out for the rest
of the answer; the answer fails only when no member is left. A member's refusal of the request itself
(`REQUEST_FAULTS`, raised as `RequestRefused`) is no member failure: before the first segment it is the
client's error, later it means the answer outgrew that member's context window, and the answer ends
there with `length`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from service.errors import BackendRejected
from service.strategies.fusion.member_set import MemberSet, RequestRefused
from service.strategies.fusion.members import Draft, Member, Sampling, ScoringMethod
from service.strategies.fusion.scoring import TokenScores, average_perplexity, perplexity, select
from service.strategies.fusion.segments import aligned_cut
from service.strategies.fusion.speculation import Speculation

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of the answer, written by `member`; `finish_reason` set on the last one."""

    text: str
    member: str
    finish_reason: str | None = None
    starts: tuple[int, ...] = ()  # where each of the writer's tokens starts in `text`

    @property
    def tokens(self) -> int:
        """The writer's tokens in `text`."""
        return len(self.starts)


FUSED = "fusion"  # the source of the fused answer


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete answer and who wrote it (`fusion` or a member's backend name)."""

    source: str
    text: str
    tokens: int
    finish_reason: str


class FusionLoop:
    """Writes one fused answer; `segments()` yields each accepted segment as soon as it is chosen."""

    def __init__(self, members: MemberSet, sampling: Sampling, max_tokens: int, segment_tokens: int,
                 on_step: Callable[[float], None], *, speculate: bool = True) -> None:
        self.members = members
        self.speculate = speculate
        self.sampling = sampling
        self.max_tokens = max_tokens
        self.segment_tokens = segment_tokens
        self.on_step = on_step
        self.answer = ""  # accepted, members continue it
        self.starts: list[int] = []  # where each of the writers' tokens starts in `answer`
        self.sent = 0  # the length of `answer` yielded; the rest may begin a stop string
        # Every proper prefix of every stop string, longest first: the answer's tail that may begin one.
        self.stop_prefixes = sorted({stop[:n] for stop in sampling.stop for n in range(1, len(stop))},
                                    key=len, reverse=True)

    @property
    def tokens(self) -> int:
        return len(self.starts)

    async def segments(self) -> AsyncGenerator[Segment, None]:
        last_winner: str | None = None
        started = time.perf_counter()
        drafts = await self.drafts_after(self.answer, self.budget(self.tokens))
        stats = self.members.stats
        stats.prompt_tokens = next(iter(drafts.values())).prompt_tokens
        while True:
            if last_winner in drafts and drafts[last_winner].finished and not drafts[last_winner].text:
                self._stepped(started)
                yield self._emit(last_winner, "stop")  # the member that wrote the last segment ends here
                return
            candidates = [d for d in drafts.values() if d.text]
            if not candidates:  # every member stopped, or wrote nothing (its context is full)
                self._stepped(started)
                yield self._emit(next(iter(drafts)), "stop" if any(d.finished for d in drafts.values()) else "length")
                return
            ahead = Speculation(self, candidates) if self.speculate and len(candidates) > 1 else None
            try:
                chosen = await self._choose(candidates)
                segment = self._finish(chosen)
                next_drafts = (ahead.take(chosen.text, self.budget(self.tokens))
                               if ahead is not None and not segment.finish_reason else None)
            except RequestRefused as error:
                if not self.answer:
                    raise
                segment, next_drafts = self._outgrown(error, last_winner or ""), None
            finally:
                if ahead is not None:
                    ahead.cancel()
            self._stepped(started)
            started = time.perf_counter()
            last_winner = segment.member
            try:
                yield segment
            except GeneratorExit:  # the client went away: stop the drafts already under way
                if next_drafts is not None:
                    next_drafts.cancel()
                raise
            if segment.finish_reason is not None:
                return
            try:
                drafts = await (next_drafts or self.drafts_after(self.answer, self.budget(self.tokens)))
            except RequestRefused as error:
                yield self._outgrown(error, segment.member)
                return
            # A speculative draft may come from a member dropped since (by a failed scoring call).
            active = {m.backend for m in self.members.active}
            drafts = {name: draft for name, draft in drafts.items() if name in active}

    def budget(self, tokens: int) -> int:
        """Tokens to draft when `tokens` of the answer are written."""
        return max(1, min(self.segment_tokens, self.max_tokens - tokens))

    def drafts_after(self, answer: str, budget: int) -> Awaitable[dict[str, Draft]]:
        """Every active member's draft after `answer`, in parallel."""
        sampling, prompts = self.sampling, self.members.prompts
        return self.members.gather("draft", lambda m: m.draft(prompts[m.backend], answer, budget, sampling))

    async def _choose(self, candidates: list[Draft]) -> Segment:
        """Score every candidate under every member, cut at aligned boundaries, keep the best."""
        # scores[member][i]: that member's tokens and log-probabilities over candidate i.
        scores: dict[str, list[TokenScores]] = {}
        if len(candidates) > 1 and len({d.text for d in candidates}) == 1:
            # Every member drafted the same text: it wins unscored, cut where all their tokens agree.
            return self._best(candidates[:1], {d.member: [d.scores] for d in candidates})
        if len(candidates) > 1 and len(self.members.active) > 1:
            answer, prompts = self.answer, self.members.prompts

            # A member's context length in its own tokens, from its draft (or the longest other one).
            context_tokens = {d.member: d.prompt_tokens for d in candidates}
            longest = max(context_tokens.values())

            def score(m: Member) -> Awaitable[tuple[list[TokenScores], ScoringMethod]]:
                return m.score(prompts[m.backend], answer, [d.text for d in candidates if d.member != m.backend],
                               context_tokens.get(m.backend, longest))

            for member, (results, method) in (await self.members.gather("score", score)).items():
                self.members.stats.scoring[method] += 1
                others = iter(results)
                scores[member] = [d.scores if d.member == member else next(others) for d in candidates]
        else:  # a single candidate wins unscored (one member left, or the others would stop here)
            scores[candidates[0].member] = [candidates[0].scores]
        return self._best(candidates, scores)

    def _best(self, candidates: list[Draft], scores: dict[str, list[TokenScores]]) -> Segment:
        cuts, averages = [], []
        for i, draft in enumerate(candidates):
            cut = aligned_cut(draft.text, [s[i].starts for s in scores.values()], final=draft.finished)
            cuts.append(cut)
            averages.append(average_perplexity({m: perplexity(s[i].before(cut)) for m, s in scores.items()}))
        best = select(averages)
        winner, cut = candidates[best], cuts[best]
        finish = "stop" if winner.finished and cut == len(winner.text) else None
        starts = tuple(start for start in winner.scores.starts if start < cut)
        return Segment(winner.text[:cut], winner.member, finish, starts)

    def _finish(self, segment: Segment) -> Segment:
        """Append an accepted segment; apply stop strings and the token budget; the text to yield."""
        finish = segment.finish_reason
        answer = self.answer + segment.text
        starts = self.starts + [len(self.answer) + start for start in segment.starts]
        end = len(answer)
        for stop in self.sampling.stop:  # a stop string may begin in the text held back before
            at = answer.find(stop, self.sent)
            if 0 <= at < end:
                end, finish = at, "stop"
        self.answer = answer[:end]
        self.starts = [start for start in starts if start < end]  # only the tokens before a stop were written
        if finish is None and self.tokens >= self.max_tokens:
            finish = "length"
        self.members.stats.selected[segment.member] += 1
        return self._emit(segment.member, finish)

    def _emit(self, member: str, finish: str | None) -> Segment:
        """The answer's text not yielded yet; until the answer ends, less the tail that may begin a stop
        string (vLLM and OpenAI send none of a stop string, so none of it may be sent before it is known)."""
        end = len(self.answer)
        if finish is None:
            end -= next((len(prefix) for prefix in self.stop_prefixes if self.answer.endswith(prefix)), 0)
        starts = tuple(start - self.sent for start in self.starts if self.sent <= start < end)
        segment = Segment(self.answer[self.sent:end], member, finish, starts)
        self.sent = end
        return segment

    def answer_of(self, parts: list[Segment]) -> Answer:
        """The whole fused answer, from every segment `segments()` yielded."""
        return Answer(FUSED, "".join(s.text for s in parts), self.tokens, parts[-1].finish_reason or "stop")

    def _outgrown(self, error: BackendRejected, member: str) -> Segment:
        """The end of an answer that a member refused to continue: it no longer fits its context window."""
        log.info("fusion answer ends at a member's limit: %s", error.message)
        return self._emit(member, "length")

    def _stepped(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        stats = self.members.stats
        stats.steps += 1
        stats.step_seconds.append(elapsed)
        self.on_step(elapsed)

