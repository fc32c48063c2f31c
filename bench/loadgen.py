"""A small closed-loop HTTP load generator: N concurrent clients, each sending requests back to back.

A request counts as a success only when it answers 200 and, for a stream, ends with `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

_DONE = b"data: [DONE]"


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    first_bytes: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(self.latencies if values is None else values)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q / 100 * len(data)))]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.latencies) if self.latencies else float("nan")


async def run_load(url: str, body: dict, *, concurrency: int, requests: int | None = None,
                   duration: float | None = None, stream: bool = False,
                   headers: dict[str, str] | None = None) -> LoadResult:
    """Send POSTs to `url` from `concurrency` workers until `requests` are sent or `duration` seconds pass.

    Stream bodies are read to the end and must finish with `[DONE]`; `first_bytes` holds the time to
    the first body chunk (time to first token for a stream).
    """
    assert requests is not None or duration is not None, "give requests or duration"
    payload = orjson.dumps({**body, "stream": stream})
    result = LoadResult()
    remaining = requests if requests is not None else 1 << 62
    connector = aiohttp.TCPConnector(limit=0)
    send_headers = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + duration if duration is not None else float("inf")

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < stop_at:
                remaining -= 1
                started = time.perf_counter()
                first: float | None = None
                tail = b""
                try:
                    async with session.post(url, data=payload, headers=send_headers) as response:
                        async for chunk in response.content.iter_any():
                            first = first or time.perf_counter()
                            tail = (tail + chunk)[-64:]
                        ok = response.status == 200 and (not stream or _DONE in tail)
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    now = time.perf_counter()
                    result.latencies.append(now - started)
                    result.first_bytes.append((first or now) - started)
                else:
                    result.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result
