"""`switchyard sim`: a small real HTTP server speaking the vLLM OpenAI subset.

Tokens are words of a fixed vocabulary; latency, decode rate and concurrency are settable, and faults
can be switched at start-up or at run time through `POST /sim/fault`:

    {"mode": "none" | "error" | "reset" | "hang" | "drop_stream" | "cut_event", "rate": 0.0-1.0}

`error` answers 500, `reset` closes the connection without a response, `hang` never answers (though
`/health` still does, as with a stuck engine behind a live API server),
`drop_stream` cuts a stream half way (without `[DONE]`), `cut_event` too but inside an event.

Every answer stops at its token budget (`finish_reason: "length"`). A chat asking for thinking
(`chat_template_kwargs.enable_thinking: true`) is answered as a reasoning model behind vLLM's reasoning
parser answers when it is cut while thinking: all of the text as `reasoning`, none as content. A completion's
text starts with a space, as a model's continuation of its prompt does.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import orjson
from aiohttp import web

FaultMode = Literal["none", "error", "reset", "hang", "drop_stream", "cut_event"]
FAULT_MODES: tuple[str, ...] = get_args(FaultMode)
_WORDS = ("the", "quick", "model", "answers", "with", "care", "and", "a", "little", "speed")


@dataclass
class SimSettings:
    model: str = "sim"
    latency_ms: float = 0.0  # delay before the first token
    tokens_per_s: float = 0.0  # decode rate; 0 = all tokens at once
    max_concurrency: int = 0  # running slots; beyond it requests wait (0 = unlimited)
    default_max_tokens: int = 16
    max_model_len: int = 131072  # a larger max_tokens is refused with vLLM's 400
    first_word: int = 0  # answers start at this vocabulary word, so two simulators can disagree
    fault: FaultMode = "none"
    fault_rate: float = 1.0


class Simulator:
    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.running = 0
        self.waiting = 0
        self.requests_total = 0
        self.generated_tokens = 0  # counted as they are generated (vllm:generation_tokens_total)
        self.token_gap_seconds = 0.0  # the set time per token, summed over them (vllm:inter_token_latency_seconds)
        self._slots = asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency else None
        self._ids = itertools.count()
        self.last_request: dict[str, Any] = {}
        self.last_request_id: str | None = None
        self.cancelled = 0  # generations abandoned because the client went away

    # Faults ---------------------------------------------------------------------------------------
    def _fault_now(self, *modes: str) -> bool:
        s = self.settings
        return s.fault in modes and random.random() < s.fault_rate

    async def set_fault(self, request: web.Request) -> web.Response:
        """Switch the fault; a bad body is answered 400 (`{"error": ...}`) and changes nothing."""
        try:
            mode, rate = _parse_fault(await request.read())
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        self.settings.fault, self.settings.fault_rate = mode, rate
        return web.json_response({"mode": mode, "rate": rate})

    # Plain endpoints ------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        # A hung engine behind a live API server still answers /health: faults spare this endpoint.
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.settings.model, "object": "model"}]})

    async def metrics(self, request: web.Request) -> web.Response:
        labels = f'{{engine="0",model_name="{self.settings.model}"}}'
        slots = self.settings.max_concurrency or 256
        text = (
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{labels} {self.running}\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{labels} {self.waiting}\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f"vllm:kv_cache_usage_perc{labels} {min(1.0, self.running / slots)}\n"
            "# TYPE vllm:request_success_total counter\n"
            f"vllm:request_success_total{labels} {self.requests_total}\n"
            "# TYPE vllm:generation_tokens_total counter\n"
            f"vllm:generation_tokens_total{labels} {self.generated_tokens}\n"
            "# TYPE vllm:inter_token_latency_seconds histogram\n"
            f"vllm:inter_token_latency_seconds_sum{labels} {self.token_gap_seconds}\n"
            f"vllm:inter_token_latency_seconds_count{labels} {self.generated_tokens}\n"
        )
        return web.Response(text=text, content_type="text/plain")

    async def get_last_request(self, request: web.Request) -> web.Response:
        return web.json_response({"body": self.last_request, "request_id": self.last_request_id,
                                  "cancelled": self.cancelled, "running": self.running})

    async def tokenize(self, request: web.Request) -> web.Response:
        """Word tokens for a prompt; a chat (`messages`) renders to `role: content` lines as character codes,
        which `/detokenize` turns back into the rendered text."""
        body = orjson.loads(await request.read())
        if "messages" in body:
            rendered = "".join(f"{m.get('role')}: {m.get('content')}\n" for m in body["messages"]) + "assistant:"
            codes = [ord(c) for c in rendered]
            return web.json_response({"tokens": codes, "count": len(codes)})
        words = str(body.get("prompt", "")).split()
        return web.json_response({"tokens": [hash(w) % 50_000 for w in words], "count": len(words)})

    async def detokenize(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        return web.json_response({"prompt": "".join(chr(t) for t in body.get("tokens", []))})

    # Generation -----------------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "body is not JSON")
        self.last_request = body
        self.last_request_id = request.headers.get("X-Request-Id")  # as vLLM reads it
        if body.get("model") != self.settings.model:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        requested = body.get("max_tokens")
        if requested is None:
            requested = body.get("max_completion_tokens")
        if isinstance(requested, int) and requested > self.settings.max_model_len:
            return _error(400, f"This model's maximum context length is {self.settings.max_model_len} tokens. "
                               f"However, you requested {requested} output tokens.", param="max_tokens")
        if self._fault_now("error"):
            return _error(500, "injected fault")
        if self._fault_now("reset"):
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if self._fault_now("hang"):
            await asyncio.Event().wait()
        self.requests_total += 1
        self.waiting += 1
        try:
            if self._slots is not None:
                await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            if self.settings.latency_ms:
                await asyncio.sleep(self.settings.latency_ms / 1000)
            count = self.settings.default_max_tokens if requested is None else max(0, int(requested))
            first = self.settings.first_word
            words = [_WORDS[(first + i) % len(_WORDS)] for i in range(count)]
            prompt_tokens = _prompt_tokens(body, chat)
            if body.get("stream"):
                return await self._stream(request, body, chat, words, prompt_tokens)
            try:
                await self._decode_delay(len(words), _choices(body, chat))
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return web.Response(body=orjson.dumps(self._full(body, chat, words, prompt_tokens)),
                                content_type="application/json")
        finally:
            self.running -= 1
            if self._slots is not None:
                self._slots.release()

    async def _decode_delay(self, tokens: int, choices: int) -> None:
        """Generate `tokens` of each of a buffered answer's `choices` side by side at the set rate, counted as
        they come, a tenth of a second's worth at a time."""
        rate = self.settings.tokens_per_s
        step = max(1, int(rate / 10)) if rate else tokens
        while tokens > 0:
            if rate:
                await asyncio.sleep(min(step, tokens) / rate)
            self._count_generated(min(step, tokens) * choices)
            tokens -= step

    def _count_generated(self, tokens: int) -> None:
        """Count `tokens` generated, each in the set time per token."""
        self.generated_tokens += tokens
        if self.settings.tokens_per_s:
            self.token_gap_seconds += tokens / self.settings.tokens_per_s

    def _full(self, body: dict[str, Any], chat: bool, words: list[str], prompt_tokens: int) -> dict[str, Any]:
        """The whole answer: `n` choices (each the same words), per prompt of a completion's prompt list."""
        text = " ".join(words)
        if words and not chat:
            text = " " + text  # a completion continues its prompt: its first word piece starts with a space
        choices_count = _choices(body, chat)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words) * choices_count,
                 "total_tokens": prompt_tokens + len(words) * choices_count}
        created = int(time.time())
        if chat:
            choices: list[dict[str, Any]] = [
                {"index": index, "finish_reason": "length",
                 "message": {"role": "assistant", "content": None, "reasoning": text} if _thinks(body) else {
                     "role": "assistant", "content": text}}
                for index in range(choices_count)]
            return {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": created,
                    "model": self.settings.model, "choices": choices, "usage": usage}
        n = _n(body)
        choices = [self._text_choice(body, index, prompt, text)
                   for index, prompt in enumerate(p for p in _prompts(body) for _ in range(n))]
        return {"id": f"cmpl-{next(self._ids)}", "object": "text_completion", "created": created,
                "model": self.settings.model, "choices": choices, "usage": usage}

    @staticmethod
    def _text_choice(body: dict[str, Any], index: int, prompt: Any, generated: str) -> dict[str, Any]:
        """One completion choice; with `logprobs`, vLLM-like token pieces that concatenate to the text."""
        text = generated
        if body.get("echo"):
            text = (prompt if isinstance(prompt, str) else "") + (generated if body.get("max_tokens") != 0 else "")
        choice: dict[str, Any] = {"index": index, "text": text, "finish_reason": "length", "logprobs": None}
        if body.get("logprobs") is not None:
            pieces = re.findall(r"\s*\S+|\s+$", text)
            offsets = [0]
            for piece in pieces[:-1]:
                offsets.append(offsets[-1] + len(piece))
            choice["logprobs"] = {
                "tokens": pieces, "text_offset": offsets,
                "token_logprobs": [None if body.get("echo") else -0.5]
                + [-0.5 - (len(t.strip()) % 3) * 0.25 for t in pieces[1:]],
                "top_logprobs": None,
            }
        return choice

    async def _stream(self, request: web.Request, body: dict[str, Any], chat: bool, words: list[str],
                      prompt_tokens: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{next(self._ids)}"
        kind = "chat.completion.chunk" if chat else "text_completion"
        created = int(time.time())
        choices_count = _choices(body, chat)
        drop_at = len(words) // 2 if self._fault_now("drop_stream", "cut_event") else -1
        per_token = 1 / self.settings.tokens_per_s if self.settings.tokens_per_s else 0.0
        field = "reasoning" if chat and _thinks(body) else "content"
        for i, word in enumerate(words):
            if i == drop_at:
                if self.settings.fault == "cut_event":
                    await response.write(b'data: {"id": "' + ident.encode() + b'", "choi')
                assert request.transport is not None
                request.transport.close()
                return response
            piece = word if i == 0 and chat else " " + word  # a completion continues its prompt
            last = i == len(words) - 1
            events = []
            for index in range(choices_count):  # as vLLM interleaves them: each choice's piece in its own chunk
                choice: dict[str, Any] = {"index": index, "finish_reason": "length" if last else None}
                if chat:
                    choice["delta"] = {"role": "assistant", field: piece} if i == 0 else {field: piece}
                else:
                    choice["text"] = piece
                chunk = {"id": ident, "object": kind, "created": created, "model": self.settings.model,
                         "choices": [choice]}
                events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
            self._count_generated(choices_count)
            try:
                await response.write(b"".join(events))
                if per_token:
                    await asyncio.sleep(per_token)
            except (ConnectionResetError, asyncio.CancelledError):
                self.cancelled += 1
                raise
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words) * choices_count,
                     "total_tokens": prompt_tokens + len(words) * choices_count}
            final: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": self.settings.model,
                                     "choices": [], "usage": usage}
            await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _parse_fault(raw: bytes) -> tuple[FaultMode, float]:
    """`{"mode": ..., "rate": 0-1}` (both optional: "none", 1.0) as (mode, rate); ValueError says what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError('body must be a JSON object: {"mode": ..., "rate": ...}')
    mode = body.get("mode", "none")
    if mode not in FAULT_MODES:
        raise ValueError(f"mode must be one of {FAULT_MODES}")
    rate = body.get("rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError("rate must be a number from 0 to 1")
    return cast(FaultMode, mode), float(rate)


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """Words of the messages, or of each text prompt, plus the ids of each token-id prompt, all added up."""
    if chat:
        return sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return sum(len(p.split()) if isinstance(p, str) else len(p) for p in _prompts(body))


def _n(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def _choices(body: dict[str, Any], chat: bool) -> int:
    """How many choices an answer has: `n`, for each prompt of a completion's prompt list."""
    return _n(body) * (1 if chat else len(_prompts(body)))


def _prompts(body: dict[str, Any]) -> list[Any]:
    """A completion's prompts, as vLLM reads them: a text or a list of token ids is one; a list of texts or of
    token-id lists, several."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        return prompt
    return [prompt if isinstance(prompt, str | list) else ""]


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "BadRequestError" if status < 500 else "InternalServerError",
                      "param": param, "code": status}}
    return web.json_response(body, status=status)


SIMULATOR = web.AppKey("simulator", Simulator)


def build_sim_app(settings: SimSettings) -> web.Application:
    sim = Simulator(settings)
    app = web.Application()
    app[SIMULATOR] = sim
    app.router.add_get("/health", sim.health)
    app.router.add_get("/metrics", sim.metrics)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_post("/tokenize", sim.tokenize)
    app.router.add_post("/detokenize", sim.detokenize)
    app.router.add_post("/v1/chat/completions", sim.chat)
    app.router.add_post("/v1/completions", sim.completions)
    app.router.add_post("/sim/fault", sim.set_fault)
    app.router.add_get("/sim/last_request", sim.get_last_request)
    return app


def _thinks(body: dict[str, Any]) -> bool:
    """Whether a chat asks for thinking (Qwen3's switch)."""
    kwargs = body.get("chat_template_kwargs")
    return isinstance(kwargs, dict) and kwargs.get("enable_thinking") is True
