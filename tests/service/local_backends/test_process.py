"""Server processes: start, reuse, health, stale pid files, early exits and stopping the whole group."""

from __future__ import annotations

import os
import signal
from dataclasses import replace

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
    assert command[command.index("--chat-template") + 1].endswith("deploy/local/gemma3-chat.jinja")
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
