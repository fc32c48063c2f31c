"""Server processes: start, reuse, health, stale pid files, early exits and stopping the whole group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from service.local_backends import process
from service.local_backends.errors import BackendError
from service.local_backends.paths import CacheDir
from service.local_backends.specs import GEMMA3, SMOLLM2, Instance
from tests.harness import free_port


def instance(port: int | None = None, name: str = SMOLLM2.name) -> Instance:
    return Instance(spec=replace(SMOLLM2, name=name), port=port or free_port(), cpu=0)


def test_launch_waits_for_health_then_reuses_and_stops(fake_cache: CacheDir) -> None:
    server = instance()
    pid, reused = process.launch(fake_cache, server)
    assert not reused
    process.wait_healthy(fake_cache, [server], timeout_s=20)
    assert os.sched_getaffinity(pid) == {server.cpu}  # the whole server on its core
    assert process.launch(fake_cache, server) == (pid, True)
    [record] = process.list_records(fake_cache)
    assert (record.id, record.pid, record.port, record.alive, record.healthy) == (server.id, pid, server.port,
                                                                                   True, True)
    assert process.stop(fake_cache, server.id)
    assert not process.is_alive(pid)
    assert process.list_records(fake_cache) == []
    assert not process.stop(fake_cache, server.id)


def test_a_recorded_server_runs_from_its_fork_on_and_a_recycled_pid_does_not() -> None:
    """`status` right after `launch` reads the child before it has exec'd vLLM: its start time names it."""
    not_yet_vllm = subprocess.Popen(["sleep", "60"])
    try:
        ticks = int(Path(f"/proc/{not_yet_vllm.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        record = {"pid": not_yet_vllm.pid, "started": time.time(), "start_ticks": ticks}
        assert process.runs(record)
        assert not process.runs({**record, "start_ticks": ticks - 1})  # the pid now names another process
        assert not process.runs({"pid": not_yet_vllm.pid})  # an older record: only vLLM's command line counts
    finally:
        not_yet_vllm.kill()
        not_yet_vllm.wait()
    assert not process.runs(record)


def test_a_server_that_exits_during_start_up_fails_with_its_log(fake_cache: CacheDir) -> None:
    server = instance(name="crashes")
    process.launch(fake_cache, server)
    with pytest.raises(BackendError, match="exited during start-up") as failure:
        process.wait_healthy(fake_cache, [server], timeout_s=20)
    assert failure.value.log == fake_cache.log(server.id)
    assert "cannot load the model" in str(failure.value)


def test_a_stale_pid_file_is_not_trusted(fake_cache: CacheDir) -> None:
    server = instance()
    pid, _ = process.launch(fake_cache, server)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    [record] = process.list_records(fake_cache)
    assert not record.alive and not record.healthy
    new_pid, reused = process.launch(fake_cache, server)
    assert not reused and new_pid != pid
    process.wait_healthy(fake_cache, [server], timeout_s=20)
    process.stop(fake_cache, server.id)
    assert not process.is_running(new_pid)


def test_a_port_taken_by_another_program_is_refused(fake_cache: CacheDir) -> None:
    first = instance()
    process.launch(fake_cache, first)
    process.wait_healthy(fake_cache, [first], timeout_s=20)
    with pytest.raises(BackendError, match=f"port {first.port} is taken"):
        process.launch(fake_cache, instance(port=first.port, name="other"))


def test_each_server_is_bound_to_its_core_and_gemma_gets_its_template(fake_cache: CacheDir) -> None:
    gemma = Instance(spec=GEMMA3, port=8032, cpu=1)
    env = process.server_env(fake_cache, gemma)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    command = process.server_command(fake_cache, gemma, enforce_eager=True, max_model_len=2048)
    assert command[command.index("--chat-template") + 1].endswith("deploy/k8s/base/vllm/gemma3-chat-template.jinja")
    assert "--enforce-eager" in command
    assert "--chat-template" not in process.server_command(fake_cache, instance(), enforce_eager=False,
                                                           max_model_len=2048)


def test_waiting_is_reported_while_a_server_starts(fake_cache: CacheDir) -> None:
    slow = instance(name="slow")  # the stand-in sleeps 1.5 s before it listens
    process.launch(fake_cache, slow)
    waits: list[list[str]] = []
    ready: list[str] = []
    process.wait_healthy(fake_cache, [slow], timeout_s=20, wait_report_s=0.5,
                         on_wait=lambda pending, elapsed: waits.append([i.id for i in pending]),
                         on_ready=lambda i, elapsed: ready.append(i.id))
    assert waits and all(w == [slow.id] for w in waits)
    assert ready == [slow.id]


def test_a_core_the_machine_does_not_offer_leaves_the_server_unconfined() -> None:
    allowed = os.sched_getaffinity(0)
    process.confine_to_core(max(allowed) + 1000)()  # run here: it must neither fail nor narrow anything
    assert os.sched_getaffinity(0) == allowed


def _orphaned_group(cache: CacheDir, server: Instance, *, ticks_offset: int = 0,
                    with_ticks: bool = True) -> tuple[int, list[int]]:
    """A group like a crashed server's: its leader killed, a worker left; returns (leader pid, workers)."""
    leader = subprocess.Popen(["bash", "-c", "sleep 100 & exec sleep 100"], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(process._group_members(leader.pid)) < 2:
        assert time.monotonic() < deadline, "the stand-in's worker did not start"
        time.sleep(0.01)  # polling, with a deadline
    record: dict[str, object] = {"pid": leader.pid, "port": server.port, "model": server.spec.name,
                                 "started": time.time()}
    if with_ticks:
        ticks = process._start_ticks(leader.pid)
        assert ticks is not None
        record["start_ticks"] = ticks + ticks_offset
    process.record_path(cache, server.id).write_text(json.dumps(record))
    workers = [pid for pid in process._group_members(leader.pid) if pid != leader.pid]
    leader.kill()
    leader.wait()
    return leader.pid, workers


def _wait_gone(pgid: int) -> bool:
    deadline = time.monotonic() + 10
    while process._group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling, with a deadline
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.mark.parametrize("with_ticks", [True, False])
def test_down_after_a_crash_ends_the_workers_the_server_left(fake_cache: CacheDir, with_ticks: bool) -> None:
    server = instance()
    pgid, workers = _orphaned_group(fake_cache, server, with_ticks=with_ticks)
    try:
        assert workers and process._group_alive(pgid)
        assert not process.stop(fake_cache, server.id, grace_s=5)  # the server itself no longer ran
        assert _wait_gone(pgid)
        assert not process.record_path(fake_cache, server.id).exists()
    finally:
        _kill_group(pgid)


def test_launch_over_a_stale_record_ends_the_workers_first(fake_cache: CacheDir) -> None:
    server = instance()
    pgid, _ = _orphaned_group(fake_cache, server)
    try:
        new_pid, reused = process.launch(fake_cache, server)
        assert not reused and new_pid != pgid
        assert _wait_gone(pgid)
    finally:
        _kill_group(pgid)


def test_a_group_started_after_the_record_is_not_ours(fake_cache: CacheDir) -> None:
    server = instance()
    pgid, _ = _orphaned_group(fake_cache, server, ticks_offset=100_000)  # as if recorded for a later process
    try:
        process.stop(fake_cache, server.id, grace_s=5)
        assert process._group_alive(pgid)
    finally:
        _kill_group(pgid)


def test_a_live_leader_that_is_not_the_recorded_process_is_left_alone(fake_cache: CacheDir) -> None:
    server = instance()
    other = subprocess.Popen(["bash", "-c", "sleep 100 & exec sleep 100"], start_new_session=True)
    try:
        for record in ({"pid": other.pid, "port": server.port, "model": server.spec.name,
                        "started": time.time(), "start_ticks": 1},  # the pid was reused
                       {"pid": other.pid, "port": server.port, "model": server.spec.name}):  # old, not vLLM
            process.record_path(fake_cache, server.id).write_text(json.dumps(record))
            assert not process.stop(fake_cache, server.id, grace_s=5)
            assert other.poll() is None and process._group_alive(other.pid)
    finally:
        _kill_group(other.pid)
        other.wait()
