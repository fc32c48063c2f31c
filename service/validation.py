"""Validation of client request bodies.

Known OpenAI fields, the mode switches the reasoning strategy reads and the gateway's own `switchyard_*`
fields are checked for type (strictly: no `"1.5"` for a number, no `2.0` for an integer, as the OpenAPI schema
says) and range; every other field (vLLM extras such as `top_k`, `prompt_logprobs`) is relayed untouched.
Validation never rebuilds the body: the client's dict travels on as it came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, with_config
from typing_extensions import TypedDict

from service.errors import InvalidRequest
from service.types import Endpoint, FusionVariant, GatewayRequest

TRADEOFF_FIELD = "switchyard_tradeoff"
VARIANT_FIELD = "switchyard_variant"
# orjson reads JSON nested up to 1024 levels but writes at most 254: a body the gateway could not send on.
MAX_NESTING = 254

# Lists stop at their first bad item: pydantic otherwise builds an error for every item of every union
# branch, and a 1 MB body of bad items held the event loop for seconds.
FAIL_FAST = Field(fail_fast=True)
StrList = Annotated[list[str], FAIL_FAST]
IntList = Annotated[list[int], FAIL_FAST]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: StrictBool | None = None


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stop: str | StrList | None = None
    seed: int | None = None
    user: str | None = None
    switchyard_tradeoff: float | None = Field(None, ge=0, le=1)
    switchyard_variant: FusionVariant | None = None


@with_config(ConfigDict(extra="allow", strict=True))
class Message(TypedDict):
    """A chat message; a TypedDict validates several times faster than a model (a body may hold thousands)."""

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: NotRequired[str | Annotated[list[dict[str, Any]], FAIL_FAST] | None]


class ChatBody(_Sampling):
    messages: list[Message] = Field(min_length=1, fail_fast=True)
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # vLLM's mode switches, read by the `thinkswitch` strategy
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: str | None = Field(None, max_length=32)
    continue_final_message: StrictBool | None = None
    add_generation_prompt: StrictBool | None = None


class CompletionBody(_Sampling):
    prompt: str | StrList | IntList | Annotated[list[IntList], FAIL_FAST]
    echo: StrictBool | None = None
    logprobs: int | None = Field(None, ge=0, le=20)

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and not prompt:
            raise ValueError("prompt must not be an empty list")
        return prompt


_BODIES: dict[Endpoint, type[_Sampling]] = {"chat": ChatBody, "completions": CompletionBody}


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits from the server settings, checked after the schema."""

    max_tokens: int
    max_n: int


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING:  # a bound on the depth; the exact check is rarely due
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise InvalidRequest(f"request body is nested more than {MAX_NESTING} levels deep") from None
    return body


def error_param(loc: tuple[int | str, ...], body: Any) -> str | None:
    """The dotted path of the field a validation error is about, e.g. `messages.0.content`. pydantic also
    names the union branch it tried (`messages.0.content.str`): parts that do not index into the body are
    left out, except a last key of an object (a missing field)."""
    parts: list[str] = []
    value = body
    for position, part in enumerate(loc):
        if isinstance(value, dict) and isinstance(part, str) and (part in value or position == len(loc) - 1):
            parts.append(part)
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            parts.append(str(part))
            value = value[part]
    return ".".join(parts) or None


def validate_request(endpoint: Endpoint | None, raw: bytes, limits: Limits) -> GatewayRequest:
    """Parse and check a request body; raise `InvalidRequest` naming the first offending field.

    `endpoint` None (for `/v1/route`) takes a body with `messages` as chat, any other as a completion.
    """
    body = parse_json_object(raw)
    if endpoint is None:
        endpoint = "chat" if "messages" in body else "completions"
    try:
        parsed = _BODIES[endpoint].model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = error_param(first["loc"], body)
        raise InvalidRequest(f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(parsed, name)
        if value is not None and value > limits.max_tokens:
            raise InvalidRequest(f"{name} must be at most {limits.max_tokens}", param=name)
    if parsed.n is not None and parsed.n > limits.max_n:
        raise InvalidRequest(f"n must be at most {limits.max_n}", param="n")
    body.pop(TRADEOFF_FIELD, None)  # the gateway's own fields: no backend reads them
    body.pop(VARIANT_FIELD, None)
    return GatewayRequest(
        endpoint=endpoint, public_model=parsed.model, body=body, stream=bool(parsed.stream),
        tradeoff=parsed.switchyard_tradeoff, variant=parsed.switchyard_variant,
    )
