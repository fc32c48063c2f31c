"""vLLM server processes: started in their own process group, awaited on `/health`, stopped by pid.

Each server leaves `run/<instance>.json` (pid, port, model, start time, start-up window) and writes
`logs/<instance>.log`.
A pid file counts as a running server only while its process is alive and started at the recorded start time
(older files without it: while it runs vLLM's server), so stale files from a crash or a reboot are ignored
and cleaned up. Stopping or replacing a server ends its
whole process group, also when the server itself has died and left its engine workers behind; the
recorded start time keeps a recycled pid from being mistaken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.local_backends.errors import BackendError, PortTaken
from service.local_backends.paths import CacheDir
from service.local_backends.specs import Instance

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
BLOCK_SIZE = 32  # KV-cache block (tokens); vLLM-CPU wants a multiple of 32
STARTUP_TIMEOUT_S = 600.0  # how long `up` waits for /health unless told otherwise (`--timeout`)


@dataclass(frozen=True)
class ServerRecord:
    """What a pid file says about a server, and whether it still runs and answers."""

    id: str
    pid: int
    port: int
    model: str
    log: Path
    alive: bool
    healthy: bool
    started: float | None = None  # time.time() at launch
    startup_timeout_s: float = STARTUP_TIMEOUT_S  # the start-up window `up` gave it

    @property
    def state(self) -> str:
        """healthy; starting (live, within its start-up window); unhealthy (live, past it); dead."""
        if self.healthy:
            return "healthy"
        if not self.alive:
            return "dead"
        starting = self.started is None or time.time() - self.started <= self.startup_timeout_s
        return "starting" if starting else "unhealthy"


def record_path(cache: CacheDir, instance_id: str) -> Path:
    return cache.run / f"{instance_id}.json"


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] != "Z"


def is_alive(pid: int) -> bool:
    """True while `pid` runs vLLM's server (a zombie or a recycled pid does not count)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return SERVER_MODULE in cmdline and is_running(pid)


def runs(data: dict[str, Any]) -> bool:
    """True while the server a pid file records runs. With the leader's start time (`start_ticks`): the pid
    started then, since this boot, and is not a zombie, which holds from the fork on, before the child has
    exec'd vLLM; older records: a live pid running vLLM's server."""
    pid, ticks, started = data["pid"], data.get("start_ticks"), data.get("started")
    if not _is_int(ticks):
        return is_alive(pid)
    if isinstance(started, (int, float)) and started < _boot_time():
        return False
    return is_running(pid) and _start_ticks(pid) == ticks


def is_healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port_taken(cache: CacheDir, instance: Instance) -> bool:
    """True when the instance's port is held by another program: not by its own server, running or leaving
    engine workers behind (`launch` ends those first)."""
    data = _read_data(record_path(cache, instance.id))
    if data is not None and (runs(data) or _owns_group(data)):
        return False
    return port_in_use(instance.port)


def _read_data(path: Path) -> dict[str, Any] | None:
    """The pid file's content when it names a pid (all `stop` needs); None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and _is_int(data.get("pid")) and data["pid"] > 0 else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_record(cache: CacheDir, path: Path) -> ServerRecord | None:
    """The server a pid file describes; None for a missing or corrupt one (no pid, port or model)."""
    data = _read_data(path)
    if data is None or not _is_int(data.get("port")) or not isinstance(data.get("model"), str):
        return None
    alive = runs(data)
    healthy = alive and is_healthy(f"http://127.0.0.1:{data['port']}")
    started, window = data.get("started"), data.get("startup_timeout_s")
    return ServerRecord(id=path.stem, pid=data["pid"], port=data["port"], model=data["model"],
                        log=cache.log(path.stem), alive=alive, healthy=healthy,
                        started=float(started) if isinstance(started, (int, float)) else None,
                        startup_timeout_s=float(window) if isinstance(window, (int, float)) else STARTUP_TIMEOUT_S)


def list_records(cache: CacheDir) -> list[ServerRecord]:
    """Every server with a readable pid file, live or not, sorted by port (`corrupt_records`: the others)."""
    records = (read_record(cache, path) for path in sorted(cache.run.glob("*.json")))
    return sorted((r for r in records if r is not None), key=lambda r: r.port)


def corrupt_records(cache: CacheDir) -> list[str]:
    """Ids of the pid files that do not describe a server (hand-edited, truncated, from another version)."""
    return [path.stem for path in sorted(cache.run.glob("*.json")) if read_record(cache, path) is None]


def server_command(cache: CacheDir, instance: Instance, *, enforce_eager: bool,
                   max_model_len: int) -> list[str]:
    command = [
        str(cache.python), "-m", SERVER_MODULE,
        "--host", "127.0.0.1", "--port", str(instance.port),
        "--model", str(cache.model_dir(instance.spec.name)),
        "--served-model-name", instance.spec.name,
        "--dtype", "bfloat16", "--max-model-len", str(max_model_len),
        # Prefix caching reuses whole blocks only; vLLM-CPU's default of 128 tokens would recompute most of
        # a short prompt on every call (fusion drafts, chats that grow by a turn).
        "--block-size", str(BLOCK_SIZE),
    ]
    if instance.spec.chat_template_path:  # the repository's copy, so template edits apply on restart
        command += ["--chat-template", str(instance.spec.chat_template_path)]
    if enforce_eager:
        command.append("--enforce-eager")
    return command


def confine_to_core(cpu: int) -> Callable[[], None]:
    """Run the whole server (HTTP front end, engine core, worker) on its one core.

    vLLM's engine core and worker wait for each other by spinning on shared memory (yielding the core
    between polls). Bound to one core, the spinning process yields to its own partner; left free, it
    takes the other core, where a second server's worker is decoding, and slows that server by half.
    A core this process may not use leaves the server unconfined.
    """
    def confine() -> None:
        if cpu in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {cpu})

    return confine


def server_env(cache: CacheDir, instance: Instance) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        # 1 GiB of KV cache is plenty for the small models and keeps two servers within a laptop's memory.
        "VLLM_CPU_KVCACHE_SPACE": "1",
        # Each server gets its own core; by default every vLLM-CPU server binds to core 0.
        "VLLM_CPU_OMP_THREADS_BIND": str(instance.cpu),
        # The AOT compile cache fails to load on CPU and would recompile on every start.
        "VLLM_USE_AOT_COMPILE": "0",
        "VLLM_CACHE_ROOT": str(cache.compile_cache),
        "TORCHINDUCTOR_CACHE_DIR": str(cache.compile_cache / "inductor"),
    })
    return env


def launch(cache: CacheDir, instance: Instance, *, enforce_eager: bool = False, max_model_len: int = 2048,
           startup_timeout_s: float = STARTUP_TIMEOUT_S) -> tuple[int, bool]:
    """Start the server unless one already runs for this instance; returns (pid, reused).

    The record keeps `startup_timeout_s`, so `status` tells a server still starting from an unhealthy one."""
    path = record_path(cache, instance.id)
    data = _read_data(path)
    if data is not None and runs(data):
        return data["pid"], True
    _end_group(data)  # workers a crashed server left behind would hold memory and cores
    path.unlink(missing_ok=True)
    if port_in_use(instance.port):
        raise PortTaken(instance.port, instance.spec.name)
    log_path = cache.log(instance.id)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(cache, instance, enforce_eager=enforce_eager, max_model_len=max_model_len),
            env=server_env(cache, instance), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `stop` ends the engine workers too
            preexec_fn=confine_to_core(instance.cpu),
        )
    record = {"pid": process.pid, "port": instance.port, "model": instance.spec.name, "started": time.time(),
              "start_ticks": _start_ticks(process.pid), "startup_timeout_s": startup_timeout_s}
    path.write_text(json.dumps(record))
    return process.pid, False


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_healthy(cache: CacheDir, instances: Iterable[Instance], timeout_s: float,
                 on_ready: Callable[[Instance, float], None] = lambda instance, elapsed: None,
                 on_wait: Callable[[list[Instance], float], None] = lambda pending, elapsed: None,
                 wait_report_s: float = 30.0) -> None:
    """Poll `/health` of every instance until all answer 200; fail fast if one exits, or at the timeout.

    `on_ready` is told when each instance turns healthy, `on_wait` every `wait_report_s` while some wait."""
    pending = list(instances)
    start = time.monotonic()
    next_report = start + wait_report_s
    while pending:
        for instance in list(pending):
            record = read_record(cache, record_path(cache, instance.id))
            if record is None or not is_running(record.pid):
                log = cache.log(instance.id)
                tail = log_tail(log)
                raise BackendError(f"vLLM server {instance.id} exited during start-up:\n{tail}\n", log)
            if is_healthy(instance.url):
                pending.remove(instance)
                on_ready(instance, time.monotonic() - start)
        elapsed = time.monotonic() - start
        if pending and elapsed > timeout_s:
            names = ", ".join(i.id for i in pending)
            raise BackendError(f"vLLM server(s) {names} not healthy after {timeout_s:.0f} s",
                               cache.log(pending[0].id))
        if pending and time.monotonic() >= next_report:
            next_report += wait_report_s
            on_wait(pending, elapsed)
        if pending:
            time.sleep(1.0)


def stop(cache: CacheDir, instance_id: str, grace_s: float = 30.0) -> bool:
    """Stop the server's whole process group (SIGTERM, then SIGKILL after `grace_s`); True if the server ran.

    A server that died still has its group ended when members remain (vLLM's engine workers). The pid file
    goes only once the group is gone: interrupted (a second Ctrl-C), it stays, and a rerun finishes the job."""
    path = record_path(cache, instance_id)
    data = _read_data(path)
    if data is None:
        path.unlink(missing_ok=True)
        return False
    pid = data["pid"]
    alive = runs(data)
    _end_group(data, grace_s)
    _reap(pid)  # a server of ours that crashed: collect its exit status
    path.unlink(missing_ok=True)
    return alive


def _end_group(data: dict[str, Any] | None, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`, the process group a record names, if it is still ours."""
    if data is None:
        return
    pgid = int(data["pid"])
    if not _owns_group(data):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        _reap(pgid)
        time.sleep(0.2)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    _reap(pgid)


def _owns_group(data: dict[str, Any]) -> bool:
    """True when the record's process group has live members that this record started.

    A record from before the last boot owns nothing. When it has the leader's start time (`start_ticks`,
    clock ticks since boot), a live leader must have started then, and the members of a group whose
    leader died must have started no earlier (a pid cannot be reused while its group has members, so
    the leader's pid names the same group as long as one remains). Older records without it trust a live
    leader that runs vLLM's server, and the members of a group whose leader died."""
    pgid = int(data["pid"])
    members = _group_members(pgid)
    if not members:
        return False
    started = data.get("started")
    if isinstance(started, (int, float)) and started < _boot_time():
        return False
    ticks = data.get("start_ticks")
    if not isinstance(ticks, int):
        return is_alive(pgid) if pgid in members else True
    if pgid in members:
        return members[pgid] == ticks
    return all(member_ticks >= ticks for member_ticks in members.values())


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat after the command name: fields[0] is the state, [2] the group, [19] the start."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def _boot_time() -> float:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _group_members(pgid: int) -> dict[int, int]:
    """{pid: start ticks} of the group's non-zombie processes (the engine workers outlive the server)."""
    members: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(stat.name)
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members[int(stat.name)] = int(fields[19])
    return members


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process of the group remains."""
    return bool(_group_members(pgid))


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
