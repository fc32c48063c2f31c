"""One fusion member: a backend that renders prompts, drafts continuations and scores candidates.

Every call is an ordinary vLLM endpoint reached through the dispatcher (least-loaded replica,
retries): `/tokenize` + `/detokenize` render a chat once per answer with the member's own template,
`/v1/completions` drafts (with the drafted tokens' log-probabilities) and scores (`echo` with
`logprobs`, several candidates as one list of prompts). The shared context stays plain text, so each
member's prompt is `its rendered prefix + the answer so far`: it only grows at the end, which keeps
the drafts prefix-cache friendly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from service.errors import UpstreamError
from service.strategies.fusion import forced
from service.strategies.fusion.scoring import TokenScores
from service.strategies.fusion.segments import piece_starts, token_ends

if TYPE_CHECKING:
    from service.dispatch import Dispatcher


@dataclass(frozen=True, slots=True)
class Prompt:
    """A member's rendering of the request: text before the answer, and whether it still needs BOS."""

    text: str
    add_special_tokens: bool


@dataclass(frozen=True, slots=True)
class Sampling:
    """The request's sampling options every member honours (greedy unless the client asks otherwise)."""

    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    top_k: int | None = None  # vLLM's
    min_p: float | None = None  # vLLM's

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"temperature": self.temperature}
        for name in ("top_p", "seed", "top_k", "min_p"):
            if (value := getattr(self, name)) is not None:
                body[name] = value
        if self.stop:
            body["stop"] = self.stop
        return body


@dataclass(frozen=True, slots=True)
class Draft:
    """A member's continuation of the shared context, with its own tokens' log-probabilities."""

    member: str
    text: str
    scores: TokenScores
    finished: bool  # the member stopped (EOS or a stop string) inside this draft
    prompt_tokens: int


ScoringMethod = Literal["echo", "forced"]


@dataclass(frozen=True, slots=True)
class ScoringPolicy:
    """How a member scores candidates: `echo`, `forced`, or `auto` (forced once its context reaches
    `forced_from_tokens` tokens: echo's cost grows with the context, forced scoring's does not)."""

    mode: Literal["auto", "echo", "forced"] = "auto"
    forced_from_tokens: int = 64

    def method(self, context_tokens: int) -> ScoringMethod:
        if self.mode == "auto":
            return "forced" if context_tokens >= self.forced_from_tokens else "echo"
        return self.mode


class Member:
    """`no_forced` names the backends found to ignore what forced scoring asks for: they score by echo for
    a while. Shared by the members of every answer, so a backend is found out once, not per answer.
    `request_id`: the client request's id, forwarded on every call (`service.request_id`; empty: none)."""

    def __init__(self, backend: str, dispatcher: Dispatcher, scoring: ScoringPolicy | None = None,
                 no_forced: forced.ForcedOff | None = None, request_id: str = "") -> None:
        self.backend = backend
        self.dispatcher = dispatcher
        self.request_id = request_id
        self.scoring = scoring or ScoringPolicy()
        self.no_forced = forced.ForcedOff() if no_forced is None else no_forced

    @property
    def forced_unsupported(self) -> bool:
        return self.backend in self.no_forced

    def mark_forced_unsupported(self) -> None:
        self.no_forced.add(self.backend)

    async def render_chat(self, messages: list[dict[str, Any]], options: dict[str, Any] | None = None) -> Prompt:
        """The conversation in this member's chat template, ending with the assistant turn's opening (or, with
        `continue_final_message`, inside the final message); `options`: the request's rendering fields."""
        body: dict[str, Any] = {"messages": messages, "add_generation_prompt": True, **(options or {})}
        ids = (await self._post("/tokenize", body))["tokens"]
        # Detokenized with its special tokens, the text re-tokenizes to the same ids (no BOS added twice).
        text = (await self._post("/detokenize", {"tokens": ids}))["prompt"]
        return Prompt(text=str(text), add_special_tokens=False)

    async def draft(self, prompt: Prompt, answer: str, max_tokens: int, sampling: Sampling) -> Draft:
        """Continue `answer` by up to `max_tokens` tokens."""
        body = {"prompt": prompt.text + answer, "max_tokens": max_tokens, "logprobs": 0,
                "add_special_tokens": prompt.add_special_tokens, **sampling.body()}
        reply = await self._post("/v1/completions", body)
        choice = _first_choice(reply, self.backend)
        text = str(choice["text"])
        pieces, logprobs = _logprobs(choice, self.backend)
        # Offsets count forward from the draft's start; tokens past a stop string are cut off.
        starts = piece_starts(pieces, text, anchor="start")
        kept = [i for i, start in enumerate(starts) if start < len(text)]
        scores = TokenScores([starts[i] for i in kept], [float(logprobs[i] or 0.0) for i in kept])
        usage = reply.get("usage") or {}
        return Draft(member=self.backend, text=text, scores=scores, finished=choice.get("finish_reason") == "stop",
                     prompt_tokens=int(usage.get("prompt_tokens") or 0))

    async def score(self, prompt: Prompt, answer: str, candidates: list[str],
                    context_tokens: int = 0) -> tuple[list[TokenScores], ScoringMethod]:
        """This member's token log-probabilities of each candidate after `answer` (a context of about
        `context_tokens` of its tokens), and the method that computed them."""
        if self.scoring.method(context_tokens) == "forced" and not self.forced_unsupported:
            scores = await self.score_forced(prompt, answer, candidates)
            if scores is not None:
                return scores, "forced"
        return await self.score_echo(prompt, answer, candidates), "echo"

    async def score_echo(self, prompt: Prompt, answer: str, candidates: list[str]) -> list[TokenScores]:
        """Scores from the echoed log-probabilities of `context + candidate`, all candidates in one request."""
        context = prompt.text + answer
        body = {"prompt": [context + c for c in candidates], "max_tokens": 0, "echo": True, "logprobs": 0,
                "temperature": 0.0, "add_special_tokens": prompt.add_special_tokens}
        reply = await self._post("/v1/completions", body)
        choices = sorted(reply.get("choices") or [], key=lambda c: int(c.get("index", 0)))
        if len(choices) != len(candidates):
            raise UpstreamError(f"backend {self.backend!r} scored {len(choices)} of {len(candidates)} candidates")
        return [_candidate_scores(choice, len(context), self.backend) for choice in choices]

    async def score_forced(self, prompt: Prompt, answer: str, candidates: list[str]) -> list[TokenScores] | None:
        """Scores by forced next tokens (`forced`), or None where they cannot be had."""
        context = prompt.text + answer
        texts = [context, *(context + c for c in candidates)]
        replies = await asyncio.gather(*(self._tokenize(text, prompt.add_special_tokens) for text in texts))
        tokenized = [t for t in replies if t is not None]
        if len(tokenized) != len(replies):
            return None
        (context_ids, _), *rest = tokenized
        if len(context_ids) < forced.THREAD_FROM_TOKENS:
            planned = self._forced_request(context, context_ids, candidates, rest)
        else:  # one prompt per candidate token, each the whole context: megabytes, kept off the event loop
            planned = await asyncio.to_thread(self._forced_request, context, context_ids, candidates, rest)
        if planned is None:
            return None
        request, payload = planned
        scores = forced.read(request, candidates, await self.dispatcher.post_encoded(
            self.backend, "/v1/completions", payload, request_id=self.request_id, max_tokens=forced.MAX_TOKENS))
        if scores is None:
            self.mark_forced_unsupported()
        return scores

    def _forced_request(self, context: str, context_ids: list[int], candidates: list[str],
                        tokenized: list[forced.Tokenized]) -> tuple[forced.ForcedPlan, bytes] | None:
        """The forced-scoring plan and its encoded request, or None where it cannot be had."""
        request = forced.plan(context, context_ids, candidates, tokenized)
        return None if request is None else (request, self.dispatcher.encode(self.backend, request.body()))

    def _post(self, path: str, body: dict[str, Any]) -> Awaitable[Any]:
        return self.dispatcher.post_json(self.backend, path, body, request_id=self.request_id)

    async def _tokenize(self, text: str, add_special_tokens: bool) -> forced.Tokenized | None:
        reply = await self._post("/tokenize", {
            "prompt": text, "add_special_tokens": add_special_tokens, "return_token_strs": True})
        ids, strs = reply.get("tokens"), reply.get("token_strs")
        if not isinstance(ids, list) or not isinstance(strs, list) or len(ids) != len(strs):
            self.mark_forced_unsupported()  # a tokenizer endpoint without vocabulary strings
            return None
        return [int(i) for i in ids], [str(s) for s in strs]


def _first_choice(reply: Any, backend: str) -> dict[str, Any]:
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not choices:
        raise UpstreamError(f"backend {backend!r} returned no choices")
    return dict(choices[0])


def _logprobs(choice: dict[str, Any], backend: str) -> tuple[list[str], list[float | None]]:
    logprobs = choice.get("logprobs") or {}
    pieces, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if pieces is None or values is None or len(pieces) != len(values):
        raise UpstreamError(f"backend {backend!r} returned no token log-probabilities")
    return [str(p) for p in pieces], list(values)


def _candidate_scores(choice: dict[str, Any], context_length: int, backend: str) -> TokenScores:
    """The tokens of an echoed `context + candidate` that cover the candidate, offsets relative to it."""
    pieces, values = _logprobs(choice, backend)
    # Offsets count back from the end of the echoed text, so the prefix's special tokens do not matter.
    text = str(choice.get("text", ""))
    starts = piece_starts(pieces, text)
    ends = token_ends(starts, len(text))
    kept = [i for i, end in enumerate(ends) if end > context_length and values[i] is not None]
    return TokenScores([starts[i] - context_length for i in kept], [float(values[i]) for i in kept])  # type: ignore[arg-type]
