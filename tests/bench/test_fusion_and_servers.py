"""bench/fusion.py without backends, and bench/servers.py keeping a failed process's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import servers
from bench.servers import process
from tests.harness import free_port

REPO = Path(__file__).resolve().parents[2]


def test_fusion_without_backends_says_to_start_them(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "deploy" / "local" / "cpu.yaml").read_text())
    for backend in config["backends"]:
        backend["replicas"] = [f"http://127.0.0.1:{free_port()}"]  # nothing listens there
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answers": ["a"]}\n')
    result = subprocess.run([sys.executable, "bench/fusion.py", "--qa", str(tmp_path / "qa.jsonl"), "--config",
                             str(tmp_path / "cpu.yaml")], cwd=REPO, capture_output=True, text=True, timeout=50)
    assert result.returncode == 1
    assert "error: no local backends are running: run `switchyard backends up` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_process_that_fails_to_start_names_its_log_and_cause(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    command = [sys.executable, "-c", "print('cannot bind: the cause'); raise SystemExit(3)"]
    with pytest.raises(RuntimeError) as failure, process(command, f"http://127.0.0.1:{free_port()}/ready", log=log):
        pass
    assert str(log) in str(failure.value) and "cannot bind: the cause" in str(failure.value)
    assert "cannot bind: the cause" in log.read_text()


def test_the_proxy_takes_core_0_and_the_simulators_every_other_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(servers.os, "cpu_count", lambda: 8)
    assert (servers.pinned(0), servers.off_core_0()) == (["taskset", "-c", "0"], ["taskset", "-c", "1-7"])
    monkeypatch.setattr(servers.os, "cpu_count", lambda: 1)
    assert servers.pinned(0) == servers.off_core_0() == []  # one core: nothing to pin
