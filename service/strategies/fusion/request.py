"""What one request asks of the fusion, checked before any backend call.

Fusion honours the sampling options every member can apply to its drafts (`temperature`, `top_p`, `seed`,
`stop`, and vLLM's `top_k` and `min_p`) and the chat rendering options (`chat_template_kwargs`,
`add_generation_prompt`, `continue_final_message`, passed to each member's template). What it cannot honour,
OpenAI's fields or vLLM's, is a 400 naming the field, never silently ignored; a field neither knows is
ignored, as vLLM ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from service.errors import InvalidRequest
from service.strategies.fusion.config import FusionConfig
from service.strategies.fusion.members import Sampling
from service.strategies.usage import asks_usage
from service.types import GatewayRequest

RENDER_FIELDS = ("chat_template_kwargs", "add_generation_prompt", "continue_final_message")

_NO_LOGPROBS = "fusion returns no log-probabilities"
_NO_TOOLS = "fusion cannot call tools"
_NO_PENALTY = "fusion cannot apply a penalty across the segments its members draft apart"
_NO_FORMAT = "fusion cannot constrain the answer's format"
_NO_IDS = "fusion cannot use token ids (they belong to one vocabulary)"
_NO_LENGTH_RULE = "fusion cannot carry a length rule across the segments its members draft apart"
MAX_STOP_STRINGS, MAX_STOP_LENGTH = 4, 256  # OpenAI's own count limit; a stop string's tail is held back
# Fields fusion cannot honour, with why; a field asks something unless it is unset, false, zero, empty or
# its neutral value.
UNSUPPORTED = {
    "logprobs": _NO_LOGPROBS, "top_logprobs": _NO_LOGPROBS, "echo": "fusion does not echo the prompt",
    "suffix": "fusion does not write before a suffix", "best_of": "fusion writes one answer: best_of must be 1",
    "tools": _NO_TOOLS, "tool_choice": _NO_TOOLS, "functions": _NO_TOOLS, "function_call": _NO_TOOLS,
    "response_format": _NO_FORMAT,
    "logit_bias": "fusion cannot bias tokens (token ids belong to one vocabulary)",
    "presence_penalty": _NO_PENALTY, "frequency_penalty": _NO_PENALTY,
    # vLLM's own request fields that the members would honour but fusion cannot carry
    "repetition_penalty": _NO_PENALTY, "length_penalty": _NO_PENALTY, "use_beam_search": "fusion does not search beams",
    "guided_json": _NO_FORMAT, "guided_regex": _NO_FORMAT, "guided_choice": _NO_FORMAT, "guided_grammar": _NO_FORMAT,
    "structured_outputs": _NO_FORMAT, "bad_words": "fusion cannot ban words across separate drafts",
    "stop_token_ids": _NO_IDS, "allowed_token_ids": _NO_IDS, "return_tokens_as_token_ids": _NO_IDS,
    "min_tokens": _NO_LENGTH_RULE, "ignore_eos": _NO_LENGTH_RULE,
    "include_stop_str_in_output": "fusion sends no part of a stop string",
    "prompt_logprobs": _NO_LOGPROBS,
    "chat_template": "fusion renders each member's chat with its own template",
    "return_token_ids": _NO_IDS, "prompt_embeds": "fusion needs a text prompt",
    "truncate_prompt_tokens": "fusion cannot truncate the prompt (each member counts it in its own tokens)",
    "add_special_tokens": "fusion tokenizes each member's prompt as that member's template needs",
    "skip_special_tokens": "fusion writes the answer as text, without special tokens",
    "spaces_between_special_tokens": "fusion writes the answer as text, without special tokens",
}
_NEUTRAL: dict[str, Any] = {"best_of": 1, "tool_choice": "none", "function_call": "none",
                            "response_format": {"type": "text"}, "repetition_penalty": 1, "length_penalty": 1}
_ON_BY_DEFAULT = ("skip_special_tokens", "spaces_between_special_tokens")
_BOOL = TypeAdapter(bool)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one request asks of the fusion."""

    variant: str
    sampling: Sampling
    max_tokens: int
    include_usage: bool
    prompt: str = ""  # a completion's prompt
    render: dict[str, Any] = field(default_factory=dict)  # a chat's rendering options


def plan_of(request: GatewayRequest, config: FusionConfig) -> Plan:
    body = request.body
    for name, reason in UNSUPPORTED.items():
        if _asks(name, body.get(name), request.endpoint):
            raise InvalidRequest(reason, param=name)
    if body.get("stream_options") and not request.stream:  # vLLM's own rule: an empty object passes
        raise InvalidRequest("stream_options can only be set when stream is true", param="stream_options")
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("fusion writes one answer: n must be 1", param="n")
    variant = request.variant or config.variant
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    if "" in stop:
        raise InvalidRequest("stop strings must not be empty", param="stop")
    if len(stop) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_LENGTH for s in stop):
        raise InvalidRequest(f"fusion takes at most {MAX_STOP_STRINGS} stop strings of at most {MAX_STOP_LENGTH} "
                             "characters", param="stop")
    sampling = Sampling(temperature=float(body.get("temperature") or 0.0), top_p=body.get("top_p"),
                        seed=body.get("seed"), stop=stop, top_k=_number(body, "top_k", int),
                        min_p=_number(body, "min_p", float))
    given = [int(body[name]) for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None]
    max_tokens = given[0] if given else config.max_tokens
    if max_tokens < 1:
        raise InvalidRequest("fusion writes at least one token: max_tokens must be 1 or more", param="max_tokens")
    include_usage = asks_usage(body)
    if request.endpoint == "chat":
        render = {name: body[name] for name in RENDER_FIELDS if body.get(name) is not None}
        return Plan(variant, sampling, max_tokens, include_usage, render=render)
    return Plan(variant, sampling, max_tokens, include_usage, prompt=_prompt(body.get("prompt")))


def _asks(name: str, value: Any, endpoint: str) -> bool:
    """Whether a field's value asks something of the answer: it is set, and not to vLLM's default (unset,
    false, zero, empty or a neutral value, for most)."""
    if value is None:
        return False
    if name in _ON_BY_DEFAULT:
        return not _flag(name, value)
    if name == "add_special_tokens":  # vLLM adds them to a completion's prompt, not to a rendered chat
        return _flag(name, value) != (endpoint == "completions")
    if (name, endpoint) == ("logprobs", "completions"):
        return True  # 0 asks for the chosen tokens' log-probabilities
    return bool(value) and value != _NEUTRAL.get(name)


def _flag(name: str, value: Any) -> bool:
    """A boolean field's value as vLLM reads it (1, "true", "yes" and the like count)."""
    try:
        return _BOOL.validate_python(value)
    except ValidationError:
        raise InvalidRequest(f"{name} must be a boolean", param=name) from None


def _number(body: dict[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    """An optional vLLM sampling number (the gateway's schema relays such extras unchecked)."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise InvalidRequest(f"{name} must be {'an integer' if kind is int else 'a number'}", param=name)
    return value


def _prompt(prompt: Any) -> str:
    """The one text prompt (a list of one string counts)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        raise InvalidRequest("fusion writes one answer: give one prompt", param="prompt")
    raise InvalidRequest("fusion needs a text prompt (token ids belong to one vocabulary)", param="prompt")
