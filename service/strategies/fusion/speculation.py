"""Speculative drafting: the next fusion step's drafts start while the current candidates are scored."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from service.strategies.fusion.members import Draft
from service.strategies.fusion.segments import aligned_cut

if TYPE_CHECKING:
    from service.strategies.fusion.loop import FusionLoop


class Speculation:
    """The next step's drafts for every candidate, started while the candidates are being scored.

    Each candidate's segment is guessed as its cut at the drafter's own last word boundary; every
    member drafts after `answer + guess` at once (once per distinct guess). When the scores confirm
    the winner's guess (the aligned cut agrees, as it nearly always does at a word boundary), those
    drafts are the next step's and the scoring round costs no extra wall time; the others are cancelled.
    A guess's token budget counts its drafter's tokens; members with other vocabularies count the same text
    differently, so drafts are taken only where their budget is the one the step after the winner needs.
    """

    def __init__(self, loop: FusionLoop, candidates: list[Draft]) -> None:
        # (guessed segment, token budget) -> the drafts after it
        self.tasks: dict[tuple[str, int], asyncio.Task[dict[str, Draft]]] = {}
        for draft in candidates:
            cut = aligned_cut(draft.text, [draft.scores.starts], final=draft.finished)
            guess = draft.text[:cut]
            tokens = loop.tokens + len(draft.scores.before(cut))
            ends = (draft.finished and cut == len(draft.text)) or tokens >= loop.max_tokens
            key = (guess, loop.budget(tokens))
            if ends or key in self.tasks:
                continue  # this candidate would end the answer, or the same guess is already drafted after
            task = asyncio.ensure_future(loop.drafts_after(loop.answer + guess, key[1]))
            task.add_done_callback(_retrieve)
            self.tasks[key] = task

    def take(self, segment: str, budget: int) -> asyncio.Task[dict[str, Draft]] | None:
        """The drafts of `budget` tokens that follow the accepted `segment`, if it was guessed right."""
        return self.tasks.pop((segment, budget), None)

    def cancel(self) -> None:
        for task in self.tasks.values():
            task.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a cancelled or failed speculative task's outcome as seen (its failure was already handled)."""
    if not task.cancelled():
        task.exception()
