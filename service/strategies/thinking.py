"""The reasoning-mode switch (ThinkSwitcher): per request, long chain-of-thought or short.

A `ThinkingSwitch` predicts each mode's pass rate from the user's question and takes the long mode
only when it is expected to pay: ŷ_long − ŷ_short ≥ τ. It then rewrites the request for the model's
reasoning family. A client that sets the mode itself always wins.

- `qwen3`: `chat_template_kwargs.enable_thinking` false (short) or true (long).
- `deepseek-r1`: short prefills the assistant turn with `<think>\\n\\n</think>\\n\\n` and sets
  `continue_final_message: true`, `add_generation_prompt: false`; long is the native template, unchanged.
  The model needs a chat template that keeps a final assistant turn (deploy/chat-templates/deepseek-r1.jinja),
  and a short answer that vLLM's reasoning parser files as reasoning is moved back into the content
  (`service.strategies.reasoning_as_content`).
- `reasoning-effort`: `reasoning_effort` "low" (short) or "high" (long).
- `custom`: the config's `short` or `long` body fields are merged in, nested objects key by key.

A long answer the switch chose that stops at `max_tokens` is asked again in short mode where `short_retry`
is on (`service.strategies.short_retry`).

Only chat requests are rewritten; completions carry their own prompt and are relayed as sent (reported short
where the prompt ends after a closed thinking block, else long).
"""

from __future__ import annotations

import copy
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field, model_validator

from router_models.thinkswitch.families import Mode, apply_family
from service.inference import BatchedInference
from service.strategies.base import StrategyConfigBase, StrategyDeps
from service.strategies.cached_scores import CachedScores
from service.strategies.query import content_text, query_text
from service.strategies.reasoning_as_content import reasoning_as_content
from service.strategies.short_retry import ask_short, combined, cut_answer, retrying_stream
from service.strategies.usage import count_completion_tokens, hide_added_usage, with_usage
from service.throttled_log import ThrottledLog
from service.types import CacheOutcome, Decision, GatewayRequest, Reply

if TYPE_CHECKING:
    from service.dispatch import Dispatcher

MODE_HEADER = "x-switchyard-thinking"
Family = Literal["qwen3", "deepseek-r1", "reasoning-effort", "custom"]  # `families.FAMILIES`, or the config's own
log = logging.getLogger(__name__)


class Switcher(Protocol):
    """What `router_models.thinkswitch.load_switcher` returns."""

    version: str
    default_tau: float
    short_retry: bool  # whether its τ was chosen for the short retry

    def predict(self, queries: list[str]) -> Any: ...  # (N, 2) predicted pass rates (short, long)


class ThinkingConfig(StrategyConfigBase):
    switcher: str = Field(description="Switcher artifact directory (`switchyard train --kind thinkswitch`).")
    family: Family
    tau: float | None = Field(None, description="Long when ŷ_long − ŷ_short ≥ tau (default: the artifact's).")
    short: dict[str, Any] = Field(default_factory=dict, description="custom family: body fields for short mode.")
    long: dict[str, Any] = Field(default_factory=dict, description="custom family: body fields for long mode.")
    short_retry: bool | None = Field(
        None, description="Ask a long answer cut at max_tokens again in short mode (chat requests with one "
        "choice; default: as the switcher was trained).")
    max_batch: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _custom_has_fields(self) -> ThinkingConfig:
        if self.family == "custom" and not (self.short or self.long):
            raise ValueError("family 'custom' needs 'short' and/or 'long' body fields")
        return self


def client_mode(body: dict[str, Any], config: ThinkingConfig) -> Mode | None:
    """The mode the client asked for itself, if any, whatever the configured family.

    Any family's switch counts: `chat_template_kwargs.enable_thinking`, `reasoning_effort`, or a final
    assistant message (a prefill; short when it closes its thinking block), and for `custom` the config's
    own fields, compared leaf by leaf. Such a request is relayed as sent.
    """
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and "enable_thinking" in kwargs:  # templates test `enable_thinking is false`
        return "short" if kwargs["enable_thinking"] is False else "long"
    effort = body.get("reasoning_effort")
    if effort is not None:
        return "short" if effort in ("low", "minimal", "none") else "long"
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "assistant":
        return "short" if "</think>" in str(messages[-1].get("content") or "") else "long"
    if config.family == "qwen3":
        return soft_switch(messages)
    if config.family == "custom":
        return _custom_mode(body, config.short, config.long)
    return None


# The literal first, so the engine jumps to it; "whitespace or the start before it" is checked per match
# (a leading look-behind made the engine try every position: 17 ms per MiB of conversation, now 0.3).
_SOFT_SWITCH = re.compile(r"/(no_)?think(?!\S)")


def _last_switch(text: str) -> Mode | None:
    """The mode of the last `/think` or `/no_think` of `text` that stands as a word of its own."""
    if "think" not in text:
        return None
    found: Mode | None = None
    for match in _SOFT_SWITCH.finditer(text):
        if match.start() == 0 or text[match.start() - 1].isspace():
            found = "short" if match.group(1) else "long"
    return found


def soft_switch(messages: list[Any]) -> Mode | None:
    """Qwen3's own switch in the prompt: the last `/think` or `/no_think` of the latest user or system message
    that has one (the model follows the most recent). `enable_thinking: false` would silence a `/think`, so
    such a request is relayed as sent."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "system"):
            continue
        found = _last_switch(content_text(message.get("content")))
        if found:
            return found
    return None


def prompt_mode(prompt: Any) -> Mode | None:
    """Short for a completion prompt, or a list of prompts, each ending inside the answer after a closed
    thinking block (the client's own prefill); None otherwise (the model thinks as it natively does)."""
    prompts = prompt if isinstance(prompt, list) and prompt else [prompt]
    closed = all(isinstance(p, str) and p.rstrip().endswith("</think>") for p in prompts)
    return "short" if closed else None


def closes_thinking(body: dict[str, Any]) -> bool:
    """Whether a chat body continues a final assistant turn that holds a closed thinking block (a short
    prefill): the model generates after `</think>`."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else None
    return (isinstance(last, dict) and last.get("role") == "assistant" and body.get("continue_final_message") is True
            and "</think>" in str(last.get("content") or ""))


def _custom_mode(body: dict[str, Any], short: dict[str, Any], long: dict[str, Any]) -> Mode | None:
    """A custom family's mode as the client set it: short where the body holds all of short mode's fields,
    long where it sets any other of the fields either mode configures (thinking is not suppressed), None
    where it sets none of them."""
    if short and _holds(body, short):
        return "short"
    return "long" if _sets_any(body, short) or _sets_any(body, long) else None


def _holds(body: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Whether `body` has every leaf of `fields` (nested objects compared key by key)."""
    return all(key in body and (_holds(body[key], value) if _both_objects(body[key], value) else body[key] == value)
               for key, value in fields.items())


def _sets_any(body: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Whether `body` sets any leaf of `fields`, whatever its value."""
    return any(key in body and (not _both_objects(body[key], value) or _sets_any(body[key], value))
               for key, value in fields.items())


def _both_objects(a: Any, b: Any) -> bool:
    return isinstance(a, dict) and isinstance(b, dict)


def _merged(body: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of `body` with `fields` merged in, nested objects key by key."""
    out = dict(body)
    for key, value in fields.items():
        out[key] = _merged(out[key], value) if _both_objects(out.get(key), value) else copy.deepcopy(value)
    return out


def apply_mode(body: dict[str, Any], config: ThinkingConfig, mode: Mode) -> dict[str, Any]:
    """A copy of a chat body rewritten for `mode` (the caller's dict is never changed)."""
    if config.family == "custom":
        return _merged(body, config.long if mode == "long" else config.short)
    return apply_family(body, config.family, mode)


class ThinkingSwitch:
    """Loads the switcher, decides the mode for a request and rewrites it; one per configured model."""

    def __init__(self, public_model: str, config: ThinkingConfig, deps: StrategyDeps) -> None:
        self.public_model = public_model
        self.config = config
        self.deps = deps
        self.switcher: Switcher | None = None
        self.tau = 0.0
        self.short_retry = False
        self._infer: BatchedInference | None = None
        self._predict: CachedScores | None = None  # both modes' predicted pass rates, from `start`
        self._failures = ThrottledLog(log)

    async def start(self) -> None:
        switcher = await self.deps.load("switcher", self.config.switcher)
        self.switcher = switcher
        self.tau = switcher.default_tau if self.config.tau is None else self.config.tau
        self.short_retry = switcher.short_retry if self.config.short_retry is None else self.config.short_retry
        self._infer = BatchedInference(lambda queries: switcher.predict(queries), max_batch=self.config.max_batch,
                                       name="switcher", executor=self.deps.inference)
        # Both modes' pass rates depend on the switcher alone (τ and the rest of the config apply afterwards):
        # every model on the same switcher shares the entries.
        self._predict = CachedScores(self._infer, self.deps.cache, lambda row: [float(row[0]), float(row[1])],
                                     field="pass_rates", count=2, strategy="thinkswitch",
                                     config_version="pass-rates", artifact_version=switcher.version)
        await self._infer.warm()

    def close(self) -> None:
        if self._infer is not None:
            self._infer.close()

    async def route(self, request: GatewayRequest) -> tuple[dict[str, Any], Mode, str, CacheOutcome]:
        """The rewritten body, the mode, why (switcher, client, default, fallback) and the cache outcome.

        Where the switcher fails, the model answers in its native long mode (`fallback`) and a warning is
        logged at most every 30 s: a broken switcher costs tokens, not answers.
        """
        started = time.perf_counter()
        outcome: CacheOutcome = "off"
        requested = client_mode(request.body, self.config)
        if request.endpoint != "chat":  # a raw prompt is the client's own: short where it closes the thinking
            requested = requested or prompt_mode(request.body.get("prompt"))
            mode, why, body = requested or "long", "client" if requested else "default", request.body
        elif requested is not None:
            mode, why, body = requested, "client", request.body
        elif (query := query_text(request)) is None:  # nothing to read (token ids): the model's own way
            mode, why = "long", "default"
            body = apply_mode(request.body, self.config, mode)
        else:
            try:
                assert self._predict is not None, "route before start"
                (short, long), outcome = await self._predict(query)
                mode, why = ("long" if long - short >= self.tau else "short"), "switcher"
            except Exception as error:  # noqa: BLE001 - any switcher trouble falls back to the native mode
                self._failures.warning("switcher of %s failed (%s: %s); answering in long mode",
                                       self.public_model, type(error).__name__, error)
                mode, why = "long", "fallback"
            body = apply_mode(request.body, self.config, mode)
        self.deps.metrics.decision_duration.labels("thinkswitch", outcome).observe(time.perf_counter() - started)
        return with_usage(request, body), mode, why, outcome  # streams too count their tokens per mode

    def record(self, decision: Decision) -> None:
        """Count the mode of a served decision (the reasoning-share panel)."""
        self.deps.metrics.thinking_mode.labels(self.public_model, decision.headers[MODE_HEADER]).inc()

    async def follow_up(
        self, request: GatewayRequest, decision: Decision, reply: Reply, dispatcher: Dispatcher
    ) -> Reply:
        """The reply as the client gets it: a long answer this switch chose that stopped at max_tokens is
        answered again in short mode where the short retry is on (`service.strategies.short_retry`), a
        short answer of the deepseek-r1 family has its text as content (`reasoning_as_content`), and a
        stream loses the usage chunk the switch asked for to count tokens, unless the client asked too."""
        return hide_added_usage(request, await self._answer(request, decision, reply, dispatcher))

    async def _answer(self, request: GatewayRequest, decision: Decision, reply: Reply, dispatcher: Dispatcher
                      ) -> Reply:
        if request.endpoint != "chat":
            return reply
        if decision.headers.get(MODE_HEADER) == "short":
            return self._as_answer(reply, decision.body)
        if not (self.short_retry and decision.headers.get(MODE_HEADER) == "long"
                and request.body.get("n") in (None, 1) and client_mode(request.body, self.config) is None):
            return reply
        if reply.stream is not None:
            if reply.status == 200:
                reply.stream = retrying_stream(
                    reply.stream, lambda: self._ask_short(request, decision, dispatcher), self._count_retry, reply)
                if reply.deadline is not None:  # the short answer may follow: its attempt has a limit of its own
                    reply.deadline += dispatcher.backends[decision.backend].timeouts.total_s
            return reply
        cut = cut_answer(reply)
        if cut is None:
            return reply
        short = await self._ask_short(request, decision, dispatcher)
        answer = None if short is None else combined(reply, cut, short)
        self._count_retry(answer is not None)
        return reply if answer is None else answer

    def _as_answer(self, short: Reply, body: dict[str, Any]) -> Reply:
        """A deepseek-r1 short answer with its text as content, where the prompt closed the thinking block
        (the short prefill, the gateway's or the client's): only then is vLLM's `reasoning` the answer. A
        client that asked for short mode some other way, which such a model ignores, gets its reasoning
        as reasoning."""
        if self.config.family != "deepseek-r1" or not closes_thinking(body):
            return short
        return reasoning_as_content(short)

    async def _ask_short(self, request: GatewayRequest, decision: Decision, dispatcher: Dispatcher) -> Reply | None:
        body = with_usage(request, apply_mode(request.body, self.config, "short"))
        short = await ask_short(request, decision, body, dispatcher)
        if short is not None:
            count_completion_tokens(short, self.deps.metrics.thinking_tokens.labels(self.public_model, "short"))
            short = self._as_answer(short, body)
        return short

    def _count_retry(self, answered: bool) -> None:
        result = "answered" if answered else "failed"
        self.deps.metrics.thinking_retries.labels(self.public_model, result).inc()
