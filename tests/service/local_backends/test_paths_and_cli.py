"""Cache directory resolution and the `backends` command's argument handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import build_parser
from service.commands.backends import parse_models, parse_ports
from service.local_backends.paths import resolve_cache_dir


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
