"""Cool+R: the fused answer competes with each member's own answer; the lowest average PPL wins."""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import BackendRejected
from service.strategies.fusion.loop import MemberSet, request_fault
from service.strategies.fusion.members import Member, Sampling
from service.strategies.fusion.scoring import average_perplexity, perplexity, select

FUSED = "fusion"


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete answer and who wrote it (`fusion` or a member's backend name)."""

    source: str
    text: str
    tokens: int
    finish_reason: str


async def solo_answer(members: MemberSet, member: Member, max_tokens: int, sampling: Sampling) -> Answer | None:
    """The member's own answer to the request, written alone in one call (None if the member failed)."""
    draft = await members.call(member, "solo", member.draft(members.prompts[member.backend], "", max_tokens,
                                                            sampling), solo=True)
    if draft is None:
        return None
    return Answer(member.backend, draft.text, len(draft.scores.starts), "stop" if draft.finished else "length")


async def rerank(members: MemberSet, answers: list[Answer]) -> Answer:
    """Every member scores every distinct answer in one request; the lowest average perplexity wins. When a
    member refuses to (an answer over its context window), the first answer (the fused one) is kept."""
    distinct = list({a.text: a for a in reversed(answers) if a.text}.values())[::-1]  # first of equal texts
    if len(distinct) <= 1:
        return distinct[0] if distinct else answers[0]
    texts = [a.text for a in distinct]
    prompts = members.prompts
    try:
        scored = await members.gather("rerank", lambda m: m.score_echo(prompts[m.backend], "", texts))
    except BackendRejected as error:
        if not request_fault(error):
            raise
        return answers[0]
    averages = [average_perplexity({m: perplexity(s[i].logprobs) for m, s in scored.items()})
                for i in range(len(distinct))]
    return distinct[select(averages)]
