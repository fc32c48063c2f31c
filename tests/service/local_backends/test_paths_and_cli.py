"""Cache directory resolution and the `backends` command's argument handling."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest

from service.cli import build_parser
from service.commands.backends import parse_models, parse_ports
from service.local_backends import process, stack
from service.local_backends.errors import BackendError
from service.local_backends.paths import CacheDir, resolve_cache_dir
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
    assert parse_ports(["smollm2=9031", "gemma3-270m=9032"]) == {"smollm2-135m-instruct": 9031,
                                                                 "gemma3-270m": 9032}
    for bad in (["x=1"], ["smollm2"], ["smollm2=port"], ["=8000"]):
        with pytest.raises(SystemExit):
            parse_ports(bad)


def test_models_accept_unique_prefixes() -> None:
    assert parse_models(["smollm2", "gemma3-270m", "smol"]) == ["smollm2-135m-instruct", "gemma3-270m"]
    with pytest.raises(SystemExit, match="'llama'"):
        parse_models(["llama"])


def test_status_of_an_empty_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["backends", "status", "--cache", str(tmp_path)])
    assert args.func(args) == 0
    assert "no backend started" in capsys.readouterr().out


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
