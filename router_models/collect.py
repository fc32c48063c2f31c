"""Collect every candidate's answer to a prompt file through OpenAI-compatible endpoints.

Input lines: `{"id", "prompt"}` (optionally `benchmark`, `meta`; a routing-data line works too).
Output: routing-data lines with `responses` filled and `scores` empty (`switchyard label` fills them).
A line is written once all candidates have answered its prompt, so a rerun skips finished prompts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from router_models.errors import DataFormatError, InputError
from router_models.jsonl import append_lines, completed_lines, json_lines


@dataclass(frozen=True)
class Endpoint:
    """A candidate: its name (sent as `model`) and the base URL of its API (…/v1)."""

    name: str
    base_url: str
    api_key: str | None = None

    @classmethod
    def parse(cls, spec: str, api_key: str | None = None) -> Endpoint:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise InputError(f"expected NAME=URL (e.g. qwen=http://127.0.0.1:8000/v1), got {spec!r}")
        return cls(name, url.rstrip("/"), api_key)


@dataclass(frozen=True)
class CollectOptions:
    max_tokens: int = 1024
    temperature: float = 0.0
    concurrency: int = 8
    retries: int = 3
    timeout_s: float = 600.0


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """The prompt lines of a file, checked before anything is asked: `DataFormatError` naming the first bad
    line (a field of the wrong type, an id seen before)."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for where, row in json_lines(path):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("prompt"), str):
            raise DataFormatError(f"{where}: expected an object with string 'id' and 'prompt'")
        for key, kind, what in (("benchmark", str, "a string"), ("meta", dict, "an object")):
            if key in row and not isinstance(row[key], kind):
                raise DataFormatError(f"{where}: field {key!r} must be {what}, got {row[key]!r}")
        if row["id"] in seen:
            raise DataFormatError(f"{where}: duplicate id {row['id']!r} (first at {seen[row['id']]})")
        seen[row["id"]] = where
        rows.append(row)
    return rows


def done_ids(path: Path) -> set[str]:
    """Ids already written to a routing-data file (what an interrupted run left torn is not counted)."""
    return {row["id"] for row in completed_lines(path) if isinstance(row, dict) and "id" in row}


class RequestFailed(Exception):
    """A request that got no usable answer; `transient` where asking again may help (a timeout, a lost
    connection, 429 or a 5xx), not where it cannot (another 4xx, an answer of another shape)."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


async def chat(
    session: aiohttp.ClientSession, endpoint: Endpoint, prompt: str, options: CollectOptions
) -> str:
    """The text of one chat completion of `prompt`."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    body = {
        "model": endpoint.name,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
    }
    reply = await post_chat(session, f"{endpoint.base_url}/chat/completions", body, headers, options.retries)
    return str(reply["choices"][0]["message"].get("content") or "")


async def post_chat(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str], retries: int
) -> dict[str, Any]:
    """A chat completion's reply, retried `retries` times with exponential back-off while its failures are
    transient; `RequestFailed` where there is none."""
    for attempt in range(retries + 1):
        try:
            return await _post_once(session, url, body, headers)
        except RequestFailed as failure:
            if not failure.transient or attempt == retries:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


async def _post_once(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """The reply, checked to be a chat completion whose first message's content is text (or null);
    `RequestFailed` saying why not (the status and the start of the body for an error answer)."""
    try:
        async with session.post(url, json=body, headers=headers) as reply:
            if reply.status >= 400:
                said = " ".join((await reply.text(errors="replace"))[:300].split())
                transient = reply.status == 429 or reply.status >= 500
                raise RequestFailed(f"{url} answered {reply.status}: {said}", transient)
            data = await reply.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError) as error:
        raise RequestFailed(f"{url}: {type(error).__name__} {error}".rstrip(), transient=True) from error
    except ValueError as error:
        raise RequestFailed(f"{url}: not a chat completion (not JSON: {error})", transient=False) from error
    if (problem := _not_a_chat_completion(data)) is not None:
        raise RequestFailed(f"{url}: not a chat completion ({problem})", transient=False)
    return dict(data)


def _not_a_chat_completion(data: Any) -> str | None:
    """What keeps `data` from being a chat completion with a first message to read, or None."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "no choices"
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return "no message"
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return f"its content is {type(content).__name__}"
    return None


async def collect(
    prompts: list[dict[str, Any]],
    endpoints: list[Endpoint],
    out: Path,
    options: CollectOptions,
    on_request: Callable[[], None] = lambda: None,
) -> tuple[int, list[str]]:
    """Ask every endpoint every prompt not yet in `out` (appending finished lines). Returns the prompts
    written and a description of each that failed (its id and why), left for a rerun."""
    finished = done_ids(out)
    todo = [p for p in prompts if p["id"] not in finished]
    limit = asyncio.Semaphore(options.concurrency)
    written = 0
    failed: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    timeout = aiohttp.ClientTimeout(total=options.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def ask(endpoint: Endpoint, prompt: str) -> str:
            async with limit:
                try:
                    return await chat(session, endpoint, prompt, options)
                finally:
                    on_request()

        async def one(row: dict[str, Any]) -> dict[str, Any] | None:
            asking = [asyncio.ensure_future(ask(e, row["prompt"])) for e in endpoints]
            try:
                answers = await asyncio.gather(*asking)
            except RequestFailed as failure:
                for request in asking:  # the line is lost: the other candidates need not answer it
                    request.cancel()
                failed.append(f"{row['id']}: {failure}")
                return None
            meta = {**row.get("meta", {}), "candidate_models": [e.name for e in endpoints]}
            return {
                "id": row["id"],
                "benchmark": row.get("benchmark", "custom"),
                "prompt": row["prompt"],
                "responses": {e.name: a for e, a in zip(endpoints, answers, strict=True)},
                "scores": {},
                "meta": meta,
            }

        with append_lines(out) as sink:
            for task in asyncio.as_completed([one(row) for row in todo]):
                if (line := await task) is None:
                    continue
                sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                sink.flush()  # every finished prompt survives an interruption
                written += 1
    return written, failed
