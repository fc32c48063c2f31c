"""`fusion`: a public model whose answer several member backends write together (Cool-Fusion).

See `loop` for one step. Chat requests are rendered by each member with its own chat template; the
shared context is the answer text. The variant comes from the config or the request's
`switchyard_variant` field (`cool` or `cool+r`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from service.errors import GatewayError, UpstreamTimeout, sse_error_event
from service.strategies.base import Strategy, StrategyDeps
from service.strategies.fusion.config import FusionConfig
from service.strategies.fusion.forced import ForcedOff
from service.strategies.fusion.loop import Answer, FusionLoop, Segment
from service.strategies.fusion.member_set import FusionStats, MemberSet
from service.strategies.fusion.members import Member, Prompt, ScoringPolicy
from service.strategies.fusion.replies import DONE, AnswerFormat, usage
from service.strategies.fusion.request import Plan, plan_of
from service.strategies.fusion.rerank import rerank, solo_answer
from service.types import Decision, GatewayRequest, Reply

if TYPE_CHECKING:
    from service.dispatch import Dispatcher

T = TypeVar("T")

class FusionStrategy(Strategy):
    kind = "fusion"

    def __init__(self, public_model: str, config: FusionConfig, deps: StrategyDeps) -> None:
        self.public_model = public_model
        self.config = config
        self.deps = deps
        self.scoring = ScoringPolicy(config.scoring, config.forced_from_tokens)
        self.no_forced = ForcedOff()  # members whose backend cannot score by forced tokens (for now)
        self.headers = {"x-switchyard-strategy": self.kind, "x-switchyard-model": ",".join(config.members),
                        "x-switchyard-cache": "off"}

    async def decide(self, request: GatewayRequest) -> Decision:
        """Fusion writes with every member; the decision names the first one for `/v1/route`."""
        return Decision(backend=self.config.members[0], body=request.body, strategy=self.kind, reason="fusion",
                        scores={m: 1.0 for m in self.config.members})

    async def respond(self, request: GatewayRequest, dispatcher: Dispatcher) -> Reply:
        """The fused answer, buffered or streamed, within the config's `total_s`."""
        deadline = asyncio.get_running_loop().time() + self.config.total_s
        reply = await self._before(deadline, self._respond(request, dispatcher, deadline))
        reply.deadline = deadline
        return reply

    async def _before(self, deadline: float, work: Awaitable[T]) -> T:
        """`work`'s result; `UpstreamTimeout` where the answer's `deadline` (`total_s`) comes first."""
        limit = asyncio.timeout_at(deadline)
        try:
            async with limit:
                return await work
        except TimeoutError:
            if not limit.expired():
                raise
            raise UpstreamTimeout(f"the fused answer of {self.public_model!r} took longer than its "
                                  f"{self.config.total_s:g} s limit (total_s)") from None

    async def _respond(self, request: GatewayRequest, dispatcher: Dispatcher, deadline: float) -> Reply:
        plan = plan_of(request, self.config)
        stats = FusionStats()
        metrics = self.deps.metrics
        members = MemberSet([Member(name, dispatcher, self.scoring, self.no_forced, request.request_id)
                             for name in self.config.members],
                            self.config.member_timeout_s, stats,
                            lambda member, phase: metrics.fusion_member_calls.labels(
                                self.public_model, member, phase).inc())
        members.prompts.update(await self._render(request, members, plan))
        fmt = AnswerFormat(request.endpoint, self.public_model)
        if plan.variant == "cool+r":
            answer = await self._reranked(members, plan)
            return self._reply(request, plan, fmt, stats, answer)
        loop = FusionLoop(members, plan.sampling, plan.max_tokens, self.config.segment_tokens, self._on_step,
                          speculate=self.config.speculate)
        segments = loop.segments()
        first = await anext(segments)  # a failure before anything is sent is an ordinary error reply
        if not request.stream:
            parts = [first] + [s async for s in segments]
            return self._reply(request, plan, fmt, stats, loop.answer_of(parts))
        reply = Reply(status=200, headers={"content-type": "text/event-stream", **self.headers}, backend=self.kind)
        reply.stream = self._stream(first, segments, loop, plan, fmt, reply, deadline)
        return reply

    async def _render(self, request: GatewayRequest, members: MemberSet, plan: Plan) -> dict[str, Prompt]:
        """Each member's prompt: the chat in its own template, or the completion prompt as given."""
        if request.endpoint == "completions":
            return {m.backend: Prompt(plan.prompt, add_special_tokens=True) for m in members.active}
        messages: list[dict[str, Any]] = request.body["messages"]
        return await members.gather("render", lambda m: m.render_chat(messages, plan.render))

    async def _reranked(self, members: MemberSet, plan: Plan) -> Answer:
        """Cool+R: the fused answer and each member's own answer, written concurrently, then reranked. A member
        dropped from the fused answer loses its own; all stop when the fused answer fails."""
        loop = FusionLoop(members, plan.sampling, plan.max_tokens, self.config.segment_tokens, self._on_step,
                          speculate=self.config.speculate)
        solos = {m.backend: asyncio.ensure_future(solo_answer(members, m, plan.max_tokens, plan.sampling))
                 for m in members.active}
        members.on_drop.append(lambda member: solos[member.backend].cancel())
        try:
            fused = loop.answer_of([s async for s in loop.segments()])
            alone = await asyncio.gather(*solos.values(), return_exceptions=True)  # a cancelled one: its error
        finally:
            for task in solos.values():
                task.cancel()
            await asyncio.wait(solos.values())
        return await rerank(members, [fused, *(a for a in alone if isinstance(a, Answer))])

    def _reply(self, request: GatewayRequest, plan: Plan, fmt: AnswerFormat, stats: FusionStats,
               answer: Answer) -> Reply:
        chosen = answer.source if plan.variant == "cool+r" else None
        counts = usage(stats, answer.tokens, plan.variant, chosen)
        headers = dict(self.headers)
        if not request.stream:
            return Reply(status=200, headers={"content-type": "application/json", **headers},
                         body=fmt.completion(answer.text, answer.finish_reason, counts), backend=self.kind,
                         upstream_s=stats.upstream_s)
        events = [fmt.chunk(answer.text, first=True), fmt.chunk("", answer.finish_reason)]
        if plan.include_usage:
            events.append(fmt.usage_chunk(counts))
        return Reply(status=200, headers={"content-type": "text/event-stream", **headers},
                     stream=_replay(events + [DONE]), backend=self.kind, upstream_s=stats.upstream_s)

    async def _stream(self, first: Segment, segments: AsyncGenerator[Segment, None], loop: FusionLoop, plan: Plan,
                      fmt: AnswerFormat, reply: Reply, deadline: float) -> AsyncIterator[bytes]:
        """Each accepted segment as a chunk as soon as it is chosen; a later total failure, or `deadline`,
        ends the stream."""
        stats = loop.members.stats
        yield fmt.chunk(first.text, first=True)
        segment = first
        try:
            while segment.finish_reason is None:
                segment = await self._before(deadline, anext(segments))
                if segment.text:
                    yield fmt.chunk(segment.text)
        except GatewayError as error:
            reply.upstream_s = stats.upstream_s
            yield sse_error_event(error)
            return
        finally:  # a client that leaves early stops the drafts already under way
            await segments.aclose()
        yield fmt.chunk("", segment.finish_reason)
        if plan.include_usage:
            yield fmt.usage_chunk(usage(stats, loop.tokens, plan.variant))
        reply.upstream_s = stats.upstream_s
        yield DONE

    def _on_step(self, seconds: float) -> None:
        metrics = self.deps.metrics
        metrics.fusion_steps.labels(self.public_model).inc()
        metrics.fusion_step_duration.labels(self.public_model).observe(seconds)


async def _replay(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event
