"""Fault soak: mixed traffic through the gateway while replicas crash, hang, drop streams and Redis restarts.

    python bench/soak.py [--duration 120] [--concurrency 16] [--router ARTIFACT]

Everything runs on loopback and stops by itself. Two backends (`sim-a`, `sim-b`) with two simulator
replicas each sit behind a gateway process that keeps its decision cache in a real redis-server.
Clients send chat and completion requests, streaming and not, to `sim-a`, `sim-b` (`direct`) and
`auto`/`auto:1` (`lookahead`), while this schedule runs (fractions of --duration):

    0.10-0.25  replica a1 killed (SIGKILL), then restarted on the same port
    0.30-0.45  replica a2 hangs on half of its requests (/health still answers)
    0.50-0.65  replica b1 cuts half of its streams midway (no [DONE])
    0.70-0.80  Redis killed, then restarted empty

Every request is counted once: succeeded; failed cleanly (an OpenAI-shaped error body, or a stream
ending with an error event and `[DONE]`); or lost (no answer by its deadline, connection dropped,
malformed body, stream without `[DONE]`). Lost must be 0. The gateway's RSS and open file
descriptors are read at the start (after warm-up) and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
import yaml  # noqa: E402

from bench.procstat import open_fds, rss_bytes  # noqa: E402
from bench.servers import Restartable, free_port, gateway_command, redis_server, sim_server  # noqa: E402
from router_models.cli.arguments import at_least, positive_float  # noqa: E402

OUTCOMES = ("succeeded", "failed_clean", "lost")
MODELS = ("sim-a", "sim-b", "auto", "auto:1")  # auto:1 takes the cheapest candidate (sim-b)
PROMPTS = [f"Question {i}: how would you explain topic {i} to a newcomer?" for i in range(64)]
DEADLINE_S = 30.0  # the gateway's own timeouts (5 s per attempt, 3 attempts) end every request sooner


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # why requests failed or were lost

    def add(self, outcome: str, reason: str) -> None:
        self.counts[outcome] += 1
        if outcome != "succeeded":
            self.reasons[f"{outcome}: {reason}"] += 1


@dataclass
class SoakReport:
    duration_s: float
    phases: dict[str, Tally]
    rss_start: int
    rss_end: int
    fds_start: int
    fds_end: int
    gateway_alive: bool

    @property
    def total(self) -> Counter[str]:
        return sum((t.counts for t in self.phases.values()), Counter())

    @property
    def lost(self) -> int:
        return self.total["lost"]

    def lines(self) -> list[str]:
        out = [f"{'phase':<22} {'succeeded':>9} {'failed_clean':>12} {'lost':>5}"]
        for name, tally in [*self.phases.items(), ("total", Tally(self.total))]:
            out.append(f"{name:<22} {tally.counts['succeeded']:>9} {tally.counts['failed_clean']:>12} "
                       f"{tally.counts['lost']:>5}")
        reasons = sum((t.reasons for t in self.phases.values()), Counter())
        out += [f"  {count:>6}  {reason}" for reason, count in reasons.most_common()]
        out.append(f"gateway RSS {self.rss_start / 2**20:.1f} MiB -> {self.rss_end / 2**20:.1f} MiB, "
                   f"open fds {self.fds_start} -> {self.fds_end}, alive at end: {self.gateway_alive}")
        return out


# Judging one answer -------------------------------------------------------------------------------
def _is_error_body(data: object) -> bool:
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


def judge_stream(raw: bytes) -> tuple[str, str]:
    """A stream is complete when every event is JSON and the last is `[DONE]`; an error event fails it cleanly."""
    events = [e for e in raw.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    if not events or events[-1].strip() != b"data: [DONE]":
        return "lost", "stream without [DONE]"
    failed = ""
    for event in events[:-1]:
        if not event.startswith(b"data: "):
            return "lost", "malformed stream event"
        try:
            data = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return "lost", "malformed stream event"
        if _is_error_body(data):
            failed = failed or str(data["error"]["message"])
    return ("failed_clean", f"stream error event: {failed}") if failed else ("succeeded", "")


def judge(status: int, content_type: str, raw: bytes, stream: bool) -> tuple[str, str]:
    if status == 200 and stream and content_type.startswith("text/event-stream"):
        return judge_stream(raw)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "lost", f"status {status} with a body that is not JSON"
    if status == 200:
        ok = isinstance(data, dict) and isinstance(data.get("choices"), list)
        return ("succeeded", "") if ok else ("lost", "200 without choices")
    if _is_error_body(data):
        return "failed_clean", f"status {status}: {data['error']['message'][:60]}"
    return "lost", f"status {status} not OpenAI"


async def one_request(session: aiohttp.ClientSession, base: str, rng: random.Random) -> tuple[str, str]:
    stream = rng.random() < 0.5
    model = rng.choice(MODELS)
    prompt = rng.choice(PROMPTS)
    body: dict[str, Any]
    if rng.random() < 0.8:
        path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}]}
    else:
        path, body = "/v1/completions", {"prompt": prompt}
    payload = orjson.dumps({**body, "model": model, "max_tokens": 16, "stream": stream})
    try:
        async with asyncio.timeout(DEADLINE_S):
            async with session.post(base + path, data=payload,
                                    headers={"Content-Type": "application/json"}) as response:
                raw = await response.read()
                return judge(response.status, response.headers.get("content-type", ""), raw, stream)
    except TimeoutError:
        return "lost", "no answer by the deadline"
    except aiohttp.ClientError as error:
        return "lost", f"connection: {type(error).__name__}"


# The fault schedule -------------------------------------------------------------------------------
Action = Callable[[], Awaitable[None]]


@dataclass
class Fault:
    name: str
    start: float  # fraction of the duration
    end: float
    on: Action
    off: Action


def set_fault(url: str, mode: str, rate: float) -> Action:
    async def act() -> None:
        async with httpx.AsyncClient() as client:
            (await client.post(url + "/sim/fault", json={"mode": mode, "rate": rate}, timeout=5)).raise_for_status()
    return act


def in_thread(fn: Callable[[], object]) -> Action:
    async def act() -> None:
        await asyncio.to_thread(fn)
    return act


class Soak:
    """The servers, the clients and the schedule of one soak run."""

    def __init__(self, replicas: dict[str, tuple[Restartable, str]], redis: Restartable, gateway_url: str,
                 gateway_pid: int) -> None:
        self.replicas = replicas
        self.redis = redis
        self.gateway_url = gateway_url
        self.gateway_pid = gateway_pid
        a1, a2, b1 = replicas["a1"], replicas["a2"], replicas["b1"]
        self.faults = [
            Fault("replica killed", 0.10, 0.25, in_thread(a1[0].kill), in_thread(a1[0].start)),
            Fault("replica hangs", 0.30, 0.45, set_fault(a2[1], "hang", 0.5), set_fault(a2[1], "none", 0)),
            Fault("streams dropped", 0.50, 0.65, set_fault(b1[1], "drop_stream", 0.5),
                  set_fault(b1[1], "none", 0)),
            Fault("redis restarted", 0.70, 0.80, in_thread(redis.kill), in_thread(redis.start)),
        ]
        self.phase = "warm-up"

    async def _schedule(self, started: float, duration: float) -> None:
        events = sorted([(f.start, f.name, f.on) for f in self.faults]
                        + [(f.end, "calm", f.off) for f in self.faults], key=lambda e: e[0])
        for at, phase, action in events:
            await asyncio.sleep(max(0.0, started + at * duration - time.monotonic()))
            await action()
            self.phase = phase

    async def run(self, duration: float, concurrency: int, seed: int = 0) -> SoakReport:
        phases: dict[str, Tally] = {name: Tally() for name in ["warm-up", *(f.name for f in self.faults), "calm"]}
        rng = random.Random(seed)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
            started = time.monotonic()
            stop_at = started + duration
            schedule = asyncio.create_task(self._schedule(started, duration))
            await asyncio.sleep(min(2.0, 0.05 * duration))  # warm-up traffic before the baseline readings
            rss_start, fds_start = rss_bytes(self.gateway_pid), open_fds(self.gateway_pid)
            worker_rngs = [random.Random(rng.random()) for _ in range(concurrency)]

            async def worker(worker_rng: random.Random) -> None:
                while time.monotonic() < stop_at:
                    phase = self.phase
                    outcome, reason = await one_request(session, self.gateway_url, worker_rng)
                    phases[phase].add(outcome, reason)

            await asyncio.gather(*(worker(r) for r in worker_rngs))
            await schedule
        await asyncio.sleep(1.0)  # let the gateway close what the last requests left
        alive = _answers(self.gateway_url + "/health")
        return SoakReport(duration, phases, rss_start, rss_bytes(self.gateway_pid), fds_start,
                          open_fds(self.gateway_pid), alive)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def gateway_config(replicas: dict[str, tuple[Restartable, str]], redis_url: str, router: str | None) -> dict:
    def urls(prefix: str) -> list[str]:
        return [url for name, (_, url) in replicas.items() if name.startswith(prefix)]

    timeouts = {"connect_s": 1, "first_byte_s": 2, "total_s": 5}
    return {
        "backends": [{"name": "sim-a", "model": "sim-a", "replicas": urls("a"), "timeouts": timeouts},
                     {"name": "sim-b", "model": "sim-b", "replicas": urls("b"), "timeouts": timeouts}],
        "models": [
            {"name": "sim-a", "strategy": {"kind": "direct", "backend": "sim-a"}},
            {"name": "sim-b", "strategy": {"kind": "direct", "backend": "sim-b"}},
            {"name": "auto", "strategy": {"kind": "lookahead", "router": router or "standin",
                                          "candidates": [{"backend": "sim-a", "cost": 1.0},
                                                         {"backend": "sim-b", "cost": 0.5}]}},
        ],
        "dispatch": {"health_interval_s": 0.5, "scrape_interval_s": 0.25, "breaker_cooldown_s": 2},
        "cache": {"redis_url": redis_url, "timeout_s": 0.05},
    }


@contextlib.contextmanager
def soak_setup(directory: Path, router: str | None = None) -> Iterator[Soak]:
    """Four simulator replicas, Redis and a gateway process over them; all stopped at the end."""
    sim_options = ("--latency-ms", "5", "--tokens-per-s", "400")
    replicas = {name: sim_server(f"sim-{name[0]}", None, *sim_options) for name in ("a1", "a2", "b1", "b2")}
    redis, redis_url = redis_server(directory)
    config = directory / "soak.yaml"
    config.write_text(yaml.safe_dump(gateway_config(replicas, redis_url, router)))
    started: list[Restartable] = []
    try:
        for server in [redis, *(r for r, _ in replicas.values())]:
            started.append(server.start())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        gateway = Restartable(gateway_command(config, port, router), lambda: _answers(url + "/ready"), "gateway",
                              log=directory / "gateway.log")
        started.append(gateway)
        gateway.start(timeout=60)
        assert gateway.proc is not None
        yield Soak(replicas, redis, url, gateway.proc.pid)
    finally:
        for server in reversed(started):
            server.kill()


def run_soak(duration: float, concurrency: int, router: str | None = None, seed: int = 0) -> SoakReport:
    with tempfile.TemporaryDirectory() as tmp, soak_setup(Path(tmp), router) as soak:
        return asyncio.run(soak.run(duration, concurrency, seed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=positive_float, default=120.0, help="seconds of traffic (default 120)")
    parser.add_argument("--concurrency", type=at_least(1), default=16, help="concurrent clients (default 16)")
    parser.add_argument("--router", help="router artifact for `auto` (default: the stand-in router)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the request mix and of when faults strike (default 0)")
    args = parser.parse_args()
    report = run_soak(args.duration, args.concurrency, args.router, args.seed)
    print("\n".join(report.lines()))
    ok = report.lost == 0 and report.gateway_alive
    print("PASS: nothing lost" if ok else "FAIL: requests lost or gateway down")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
