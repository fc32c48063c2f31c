"""The local backend stack as a whole: prepare what is missing, start what is not running, stop all."""

from __future__ import annotations

import time
from collections.abc import Sequence

from service.local_backends import process
from service.local_backends.errors import PortTaken
from service.local_backends.paths import CacheDir
from service.local_backends.prepare import Report, ensure_model, ensure_venv
from service.local_backends.process import ServerRecord
from service.local_backends.specs import Instance

DEFAULT_TIMEOUT_S = process.STARTUP_TIMEOUT_S


def up(cache: CacheDir, instances: Sequence[Instance], report: Report, *, enforce_eager: bool = False,
       timeout_s: float = DEFAULT_TIMEOUT_S, started: list[str] | None = None) -> list[str]:
    """Make every instance serve and answer `/health`; reuses the venv, models and running servers.

    Returns the ids of the servers this call started (not those it found running); `started`, when given,
    receives each as it starts, so a caller interrupted or failed midway knows what to stop. A port taken by
    another program fails at once (`PortTaken`), before the venv and the models are prepared."""
    for instance in instances:
        if process.port_taken(cache, instance):
            raise PortTaken(instance.port, instance.spec.name)
    cache.ensure()
    ensure_venv(cache, report)
    for spec in dict.fromkeys(i.spec for i in instances):
        ensure_model(cache, spec, report)
    start = time.monotonic()
    started = [] if started is None else started
    for instance in instances:
        pid, reused = process.launch(cache, instance, enforce_eager=enforce_eager, startup_timeout_s=timeout_s)
        if not reused:
            started.append(instance.id)
        state = "already running" if reused else "starting"
        report(f"server {instance.id}: {state}, pid {pid}, {instance.url} (log: {cache.log(instance.id)})")

    def ready(instance: Instance, elapsed: float) -> None:
        report(f"server {instance.id}: healthy after {elapsed:.0f} s")

    def waiting(pending: list[Instance], elapsed: float) -> None:
        names = ", ".join(i.id for i in pending)
        report(f"  still starting after {elapsed:.0f} s: {names} (compiling; timeout {timeout_s:.0f} s)")

    process.wait_healthy(cache, instances, timeout_s, on_ready=ready, on_wait=waiting)
    report(f"all {len(instances)} backend(s) healthy in {time.monotonic() - start:.0f} s")
    return started


def down(cache: CacheDir, report: Report, ids: Sequence[str] | None = None) -> int:
    """Stop the servers with pid files (all, or those in `ids`); returns how many were running.

    A corrupt pid file is removed, after ending the process group it names where that is still ours."""
    stopped = 0
    for record in process.list_records(cache):
        if ids is not None and record.id not in ids:
            continue
        if process.stop(cache, record.id):
            stopped += 1
            report(f"server {record.id}: stopped (pid {record.pid})")
        else:
            report(f"server {record.id}: was not running; removed its stale pid file")
    for corrupt in process.corrupt_records(cache):
        if ids is None or corrupt in ids:
            ran = process.stop(cache, corrupt)
            stopped += ran
            report(f"server {corrupt}: corrupt pid file {process.record_path(cache, corrupt)}; removed it"
                   + (" and stopped its server" if ran else ""))
    return stopped


def status(cache: CacheDir) -> list[ServerRecord]:
    return process.list_records(cache)
