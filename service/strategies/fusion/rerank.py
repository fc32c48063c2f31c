"""Cool+R: the fused answer competes with each member's own answer; the lowest average PPL wins."""

from __future__ import annotations

from service.strategies.fusion.loop import Answer
from service.strategies.fusion.member_set import MemberSet, RequestRefused
from service.strategies.fusion.members import Member, Sampling
from service.strategies.fusion.scoring import average_perplexity, perplexity, select


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
    first: dict[str, Answer] = {}  # of equal texts, the first answer, in its place: ties go to the fused one
    for answer in answers:
        if answer.text:
            first.setdefault(answer.text, answer)
    distinct = list(first.values())
    if len(distinct) <= 1:
        return distinct[0] if distinct else answers[0]
    texts = [a.text for a in distinct]
    prompts = members.prompts
    try:
        scored = await members.gather("rerank", lambda m: m.score_echo(prompts[m.backend], "", texts))
    except RequestRefused:
        return answers[0]
    averages = [average_perplexity({m: perplexity(s[i].logprobs) for m, s in scored.items()})
                for i in range(len(distinct))]
    return distinct[select(averages)]
