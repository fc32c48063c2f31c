"""Switchyard against direct access, LiteLLM and vllm-router: the same load through each, one table.

    python bench/compare.py [--concurrency 1 32 256] [--duration 6] [--router ARTIFACT]

Starts two simulators (fixed latency and token rate), then, one proxy at a time, sends the same
closed-loop load (streaming and not) through:

    direct             straight to the simulator (the baseline)
    switchyard-direct  Switchyard, public model with the `direct` strategy
    switchyard-auto    Switchyard `auto` (lookahead) with a warm decision cache
    litellm            LiteLLM proxy in its own venv (.cache/bench/litellm-venv, installed on first run)
    vllm-router        the Rust vllm-router from PyPI (.cache/bench/vllm-router-venv), plain dispatch
    bare-asgi          bench/bare_proxy.py: uvicorn + aiohttp forwarding bodies, the floor of a Python proxy

Each proxy runs pinned to core 0 (taskset); this process, the load generator and the simulators run
on the other cores. Besides wall-clock throughput, the proxy's CPU time per request is read from
/proc: "req/CPU-s" is what one fully used core sustains, and stays meaningful when other jobs share
the machine. `auto` uses the router artifact given with --router (router_models.load_router); without
one it uses a stand-in router (bench/standin.py), which a warm cache never calls anyway.
The table is printed and written to bench/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
import yaml  # noqa: E402

from bench.loadgen import LoadResult, run_load  # noqa: E402
from bench.procstat import RESOLUTION, cpu_seconds  # noqa: E402
from bench.servers import (  # noqa: E402
    REPO,
    free_port,
    gateway_command,
    keep_off_core_0,
    off_core_0,
    pinned,
    process,
    sim_process,
)
from router_models.cli.arguments import at_least, non_negative_float, positive_float  # noqa: E402

TARGETS = ("direct", "switchyard-direct", "switchyard-auto", "litellm", "vllm-router", "bare-asgi")
VENVS = REPO / ".cache" / "bench"
LITELLM_KEY = "sk-bench-local"
READING = [
    "Reading the table: `req/CPU-s` (requests per second of the proxy's own CPU time) is the capacity of "
    "one core and holds when other jobs share the machine; wall-clock `req/s` at low concurrency is bounded "
    "by the simulator. With a load average far above the core count, every hop through another process "
    "waits for a CPU, so added latencies then measure the scheduler more than the proxy; compare them "
    "between proxies (vllm-router is the floor) and with the load average above.",
]
BODY = {"messages": [{"role": "user", "content": "Say hello in a few words."}], "max_tokens": 16}


@dataclass
class Target:
    """One way to reach the simulator: base URL, model name to ask for, and the proxy process (if any)."""

    name: str
    url: str
    model: str
    pid: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Row:
    target: str
    stream: bool
    concurrency: int
    result: LoadResult
    cpu_s: float | None  # proxy CPU seconds spent on the measured load
    paired: list[float] = field(default_factory=list)  # added latency, paired with direct (concurrency 1)

    @property
    def cpu_ms_per_request(self) -> float | None:
        done = len(self.result.latencies) + self.result.errors
        return self.cpu_s / done * 1000 if self.cpu_s is not None and done else None

    @property
    def per_cpu_second(self) -> float | None:
        ms = self.cpu_ms_per_request
        return 1000 / ms if ms else None


# Setting up the proxies ---------------------------------------------------------------------------
def ensure_venv(name: str, requirement: str, executable: str) -> Path:
    """A venv under .cache/bench with `requirement` installed; created on first use."""
    venv = VENVS / name
    if not (venv / "bin" / executable).exists():
        print(f"installing {requirement} into {venv.relative_to(REPO)} (first run only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", requirement], check=True)
    return venv


@contextlib.contextmanager
def switchyard(sims: dict[str, str], directory: Path, router: str | None) -> Iterator[Target]:
    config = {
        "backends": [{"name": name, "model": name, "replicas": [url]} for name, url in sims.items()],
        "models": [
            {"name": "sim-a", "strategy": {"kind": "direct", "backend": "sim-a"}},
            {"name": "auto", "strategy": {"kind": "lookahead", "router": router or "standin",
                                          "candidates": [{"backend": "sim-a", "cost": 1.0},
                                                         {"backend": "sim-b", "cost": 2.0}]}},
        ],
    }
    path = directory / "switchyard.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    with process(gateway_command(path, port, router, pinned(0)), f"http://127.0.0.1:{port}/ready",
                 log=directory / "gateway.log") as proc:
        yield Target("switchyard", f"http://127.0.0.1:{port}", "sim-a", proc.pid)


@contextlib.contextmanager
def litellm(sim: str, directory: Path) -> Iterator[Target]:
    venv = ensure_venv("litellm-venv", "litellm[proxy]", "litellm")
    config = {
        "model_list": [{"model_name": "sim-a", "litellm_params": {
            "model": "openai/sim-a", "api_base": sim + "/v1", "api_key": "unused"}}],
        "litellm_settings": {"set_verbose": False, "turn_off_message_logging": True},
    }
    path = directory / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, "LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_LOG": "ERROR"}
    args = [*pinned(0), str(venv / "bin" / "litellm"), "--config", str(path), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    with process(args, f"http://127.0.0.1:{port}/health/liveliness", env=env, timeout=180) as proc:
        yield Target("litellm", f"http://127.0.0.1:{port}", "sim-a", proc.pid,
                     {"Authorization": f"Bearer {LITELLM_KEY}"})


@contextlib.contextmanager
def vllm_router(sim: str) -> Iterator[Target]:
    venv = ensure_venv("vllm-router-venv", "vllm-router", "vllm-router")
    port = free_port()
    args = [*pinned(0), str(venv / "bin" / "vllm-router"), "--worker-urls", sim, "--host", "127.0.0.1",
            "--port", str(port), "--policy", "round_robin", "--log-level", "error"]
    with process(args, f"http://127.0.0.1:{port}/health", timeout=120) as proc:
        yield Target("vllm-router", f"http://127.0.0.1:{port}", "sim-a", proc.pid)


@contextlib.contextmanager
def bare_asgi(sim: str) -> Iterator[Target]:
    port = free_port()
    args = [*pinned(0), sys.executable, "-m", "uvicorn", "bench.bare_proxy:app", "--host", "127.0.0.1",
            "--port", str(port), "--http", "httptools", "--loop", "uvloop", "--log-level", "warning",
            "--no-access-log"]
    with process(args, f"http://127.0.0.1:{port}/health", env={**os.environ, "UPSTREAM": sim}) as proc:
        yield Target("bare-asgi", f"http://127.0.0.1:{port}", "sim-a", proc.pid)


# Measuring ----------------------------------------------------------------------------------------
def merge(into: LoadResult, part: LoadResult) -> None:
    into.latencies += part.latencies
    into.first_bytes += part.first_bytes
    into.errors += part.errors
    into.elapsed += part.elapsed


def measure(targets: list[tuple[str, Target, str]], args: argparse.Namespace) -> list[Row]:
    """Every target under every load, in interleaved rounds so that slow drifts of a shared machine
    spread over all targets alike instead of favouring whichever ran in a quiet minute."""
    rows: list[Row] = []
    for stream in (False, True):
        for concurrency in args.concurrency:
            runs = {name: Row(name, stream, concurrency, LoadResult(), 0.0 if target.pid else None)
                    for name, target, _ in targets}
            for _ in range(args.rounds):
                for name, target, model in targets:
                    url, body = target.url + "/v1/chat/completions", {**BODY, "model": model}
                    # Warm-up: connections, lazy imports and (for auto) the decision cache.
                    asyncio.run(run_load(url, body, concurrency=concurrency, duration=args.warmup,
                                         stream=stream, headers=target.headers))
                    before = cpu_seconds(target.pid) if target.pid else 0.0
                    part = asyncio.run(run_load(url, body, concurrency=concurrency,
                                                duration=args.duration / args.rounds, stream=stream,
                                                headers=target.headers))
                    row = runs[name]
                    merge(row.result, part)
                    if row.cpu_s is not None and target.pid:
                        row.cpu_s += cpu_seconds(target.pid) - before
            for row in runs.values():
                print(f"  {row.target:<18} {'stream' if stream else 'json':<6} c={concurrency:<4} "
                      f"{row.result.requests_per_s:8.0f} req/s  errors {row.result.errors}", flush=True)
            rows += runs.values()
    return rows


async def _timed(session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    async with session.post(url, data=payload, headers={"Content-Type": "application/json", **headers}) as response:
        await response.read()
        response.raise_for_status()
    return time.perf_counter() - started


async def paired_added(direct: Target, target: Target, model: str, stream: bool, pairs: int) -> list[float]:
    """Added latency at concurrency 1, request by request: each proxied request is timed next to a direct
    one sent just before or after it, so the machine's changing load cancels out of the difference."""
    direct_payload = orjson.dumps({**BODY, "model": direct.model, "stream": stream})
    proxied_payload = orjson.dumps({**BODY, "model": model, "stream": stream})
    differences = []
    async with aiohttp.ClientSession() as session:
        for i in range(pairs + 20):  # the first 20 pairs warm connections up
            legs = [(direct.url, direct_payload, direct.headers), (target.url, proxied_payload, target.headers)]
            if i % 2:
                legs.reverse()
            times = {url: await _timed(session, url + "/v1/chat/completions", data, headers)
                     for url, data, headers in legs}
            if i >= 20:
                differences.append(times[target.url] - times[direct.url])
    return differences


def cache_outcome(target: Target) -> str:
    response = httpx.post(target.url + "/v1/chat/completions", json={**BODY, "model": "auto"}, timeout=10)
    return response.headers.get("x-switchyard-cache", "?")


def run_all(args: argparse.Namespace, directory: Path) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    sim_options = ("--latency-ms", str(args.latency_ms), "--tokens-per-s", str(args.tokens_per_s))
    others = off_core_0()
    with contextlib.ExitStack() as stack:
        sim_a = stack.enter_context(sim_process("sim-a", *sim_options, prefix=others))
        sim_b = stack.enter_context(sim_process("sim-b", *sim_options, prefix=others))
        targets: list[tuple[str, Target, str]] = [("direct", Target("direct", sim_a, "sim-a"), "sim-a")]
        gateway: Target | None = None
        if {"switchyard-direct", "switchyard-auto"} & set(args.targets):
            gateway = stack.enter_context(switchyard({"sim-a": sim_a, "sim-b": sim_b}, directory, args.router))
            targets += [(name, gateway, model) for name, model in
                        (("switchyard-direct", "sim-a"), ("switchyard-auto", "auto")) if name in args.targets]
        for name, starter in (("litellm", lambda: litellm(sim_a, directory)),
                              ("vllm-router", lambda: vllm_router(sim_a)),
                              ("bare-asgi", lambda: bare_asgi(sim_a))):
            if name in args.targets:
                try:
                    targets.append((name, stack.enter_context(starter()), "sim-a"))
                except (RuntimeError, subprocess.CalledProcessError) as error:
                    notes.append(f"{name}: not measured ({error})")
                    print(f"  {name}: not measured ({error})", flush=True)
        rows = measure(targets, args)
        if args.pairs:
            for row in rows:
                if row.concurrency == 1 and row.target != "direct":
                    _, target, model = next(t for t in targets if t[0] == row.target)
                    row.paired = asyncio.run(paired_added(targets[0][1], target, model, row.stream, args.pairs))
        if gateway is not None and "switchyard-auto" in args.targets:
            notes.append(f"switchyard-auto: decision cache after the runs: {cache_outcome(gateway)}; "
                         f"router: {args.router or 'stand-in (bench/standin.py)'}")
    return rows, notes


# Reporting ----------------------------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value * 1000:.2f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row]) -> list[str]:
    baseline = {(r.stream, r.concurrency): r.result for r in rows if r.target == "direct"}
    lines = ["| target | mode | conc | req/s | proxy CPU ms/req | req/CPU-s | p50 ms | p99 ms | added p50 ms "
             "| added p99 ms | added p50 paired ms | TTFT p50 ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = baseline.get((r.stream, r.concurrency))
        p50, p99 = r.result.percentile(50), r.result.percentile(99)
        added50 = p50 - base.percentile(50) if base and r.target != "direct" else None
        added99 = p99 - base.percentile(99) if base and r.target != "direct" else None
        lines.append(
            f"| {r.target} | {'stream' if r.stream else 'json'} | {r.concurrency} | {r.result.requests_per_s:.0f} "
            f"| {_num(r.cpu_ms_per_request, 3)} | {_num(r.per_cpu_second)} | {_ms(p50)} | {_ms(p99)} "
            f"| {_ms(added50)} | {_ms(added99)} | {_ms(r.result.percentile(50, r.paired) if r.paired else None)} "
            f"| {_ms(r.result.percentile(50, r.result.first_bytes))} "
            f"| {r.result.errors} |")
    return lines


def verdicts(rows: list[Row]) -> list[str]:
    """The gateway's performance targets (docs/bench.md), each checked against the measured rows: `direct` ≥ 5×
    LiteLLM's requests per CPU-second, `auto` ≥ 80% of `direct`, added p50 ≤ 1 ms, errors only where direct errs."""
    index = {(r.target, r.stream, r.concurrency): r for r in rows}
    keys = sorted({(r.stream, r.concurrency) for r in rows})
    lines = []
    for stream, conc in keys:
        mode = "stream" if stream else "json"
        sy, lite = index.get(("switchyard-direct", stream, conc)), index.get(("litellm", stream, conc))
        auto, rust = index.get(("switchyard-auto", stream, conc)), index.get(("vllm-router", stream, conc))
        direct = index.get(("direct", stream, conc))
        parts = [f"{mode} c={conc}:"]
        if sy and lite and sy.per_cpu_second and lite.per_cpu_second:
            ratio = sy.per_cpu_second / lite.per_cpu_second
            parts.append(f"switchyard/litellm per CPU-s {ratio:.1f}x ({'ok' if ratio >= 5 else 'MISSED'} >= 5x), "
                         f"wall {sy.result.requests_per_s / max(lite.result.requests_per_s, 1e-9):.1f}x;")
        if sy and auto and sy.per_cpu_second and auto.per_cpu_second:
            ratio = auto.per_cpu_second / sy.per_cpu_second
            parts.append(f"auto/direct {ratio:.0%} ({'ok' if ratio >= 0.8 else 'MISSED'} >= 80%);")
        if sy and rust and sy.per_cpu_second and rust.per_cpu_second:
            parts.append(f"vllm-router/switchyard per CPU-s {rust.per_cpu_second / sy.per_cpu_second:.1f}x;")
        if sy and sy.paired:
            added = sy.result.percentile(50, sy.paired) * 1000
            parts.append(f"added p50 (paired) {added:.2f} ms ({'ok' if added <= 1 else 'MISSED'} <= 1 ms);")
        if direct:
            bad = [r.target for r in (sy, auto) if r and r.result.errors > direct.result.errors]
            parts.append("switchyard errors only where direct errs: " + ("ok" if not bad else f"NO ({bad})"))
        lines.append(" ".join(parts))
    return lines


def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return [f"- CPU: {cpu}, {os.cpu_count()} cores; memory {int(memory) // 1024 // 1024} GiB; "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
            f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def versions(targets: list[str]) -> str:
    """Versions of the proxies among `targets` that have a benchmark venv."""
    found = []
    for name, venv in (("litellm", "litellm-venv"), ("vllm-router", "vllm-router-venv")):
        if name not in targets:
            continue
        pip = VENVS / venv / "bin" / "pip"
        if pip.exists():
            out = subprocess.run([str(pip), "show", name], capture_output=True, text=True).stdout
            found += [f"{name} {line.split()[1]}" for line in out.splitlines() if line.startswith("Version:")]
    return ", ".join(found)


def version_lines(targets: list[str]) -> list[str]:
    """The header line with the versions of the proxies compared, none when no such proxy is a target."""
    found = versions(targets)
    return [f"- {found}"] if found else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=at_least(1), nargs="+", default=[1, 32, 256],
                        help="closed-loop clients, one table row each (default: 1 32 256)")
    parser.add_argument("--duration", type=positive_float, default=6.0,
                        help="measured seconds per target and load (default 6)")
    parser.add_argument("--rounds", type=at_least(1), default=3,
                        help="interleaved rounds the duration is split into (default 3)")
    parser.add_argument("--warmup", type=non_negative_float, default=0.5,
                        help="unmeasured seconds before each round (default 0.5)")
    parser.add_argument("--latency-ms", type=non_negative_float, default=10.0,
                        help="simulator delay before the first token (default 10)")
    parser.add_argument("--tokens-per-s", type=positive_float, default=1000.0,
                        help="simulator decode rate (default 1000)")
    parser.add_argument("--pairs", type=at_least(0), default=300,
                        help="request pairs for the paired added latency at concurrency 1 (0: skip; default 300)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--router", help="router artifact for `auto` (default: the stand-in router)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md",
                        help="markdown report to write ('-': print only)")
    args = parser.parse_args()
    if "direct" not in args.targets:
        args.targets.insert(0, "direct")  # the baseline every added latency is measured against
    keep_off_core_0()  # the load generator
    header = machine()
    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        rows, notes = run_all(args, Path(tmp))
    header.append(f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    command = "python bench/compare.py " + " ".join(sys.argv[1:])
    placement = ("proxies pinned to core 0 (taskset), load generator and simulators on the other cores"
                 if pinned(0) else "nothing pinned (no taskset, or one core)")
    setup = (f"- {placement}; proxy CPU time read at {RESOLUTION}; simulator: {args.latency_ms:g} ms to first "
             f"token, {args.tokens_per_s:g} tokens/s, 16 tokens; {args.duration:g} s per target and load, in "
             f"{args.rounds} interleaved rounds each after {args.warmup:g} s warm-up")
    report = [
        "# Benchmark: Switchyard against direct access, LiteLLM and vllm-router", "",
        f"Command: `{command.strip()}` ({started})", "",
        *header, setup, *version_lines(args.targets), "",
        *table(rows), "", "Targets:", "", *(f"- {line}" for line in verdicts(rows)), "",
        *(f"- {note}" for note in notes), "", *READING,
    ]
    print("\n".join(report))
    if str(args.output) != "-":
        args.output.write_text("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
