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
    """

    def __init__(self, loop: FusionLoop, candidates: list[Draft]) -> None:
        self.tasks: dict[str, asyncio.Task[dict[str, Draft]]] = {}  # guessed segment -> drafts after it
        for draft in candidates:
            cut = aligned_cut(draft.text, [draft.scores.starts], final=draft.finished)
            guess = draft.text[:cut]
            tokens = loop.tokens + len(draft.scores.before(cut))
            ends = (draft.finished and cut == len(draft.text)) or tokens >= loop.max_tokens
            if ends or guess in self.tasks:
                continue  # this candidate would end the answer, or the same guess is already drafted after
            budget = loop.budget(tokens)
            task = asyncio.ensure_future(loop.drafts_after(loop.answer + guess, budget))
            task.add_done_callback(_retrieve)
            self.tasks[guess] = task

    def take(self, segment: str) -> asyncio.Task[dict[str, Draft]] | None:
        """The drafts that follow the accepted `segment`, if it was guessed right."""
        return self.tasks.pop(segment, None)

    def cancel(self) -> None:
        for task in self.tasks.values():
            task.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a cancelled or failed speculative task's outcome as seen (its failure was already handled)."""
    if not task.cancelled():
        task.exception()
