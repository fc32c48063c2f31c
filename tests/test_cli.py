import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_parser
from service.commands import demo
from service.local_backends import process, specs, stack
from tests.harness import free_port


def test_help_lists_every_subcommand() -> None:
    result = subprocess.run([sys.executable, "-m", "service.cli", "--help"], capture_output=True, text=True,
                            check=True)
    for command in ("serve", "sim", "train", "eval"):
        assert command in result.stdout


def test_serve_reports_a_bad_config_without_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "c.yaml"
    config.write_text("backends: []\nmodels: []\n")
    result = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "backends" in result.stderr and "Traceback" not in result.stderr


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():  # type: ignore[attr-defined]
        assert sub.description, name


def test_a_missing_file_or_a_bad_data_line_is_reported_without_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    for data, message in ((tmp_path / "missing.jsonl", "missing.jsonl: No such file"), (bad, "bad.jsonl:1: ")):
        result = subprocess.run([sys.executable, "-m", "service.cli", "train", "--kind", "thinkswitch", "--data",
                                 str(data), "--out", str(tmp_path / "out")], capture_output=True, text=True)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *argv], capture_output=True, text=True, timeout=120)


def test_serve_reports_an_unusable_artifact_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "c.yaml"
    config.write_text(
        "backends: [{name: m, model: m, replicas: ['http://127.0.0.1:9']}]\n"
        f"models: [{{name: reasoner, strategy: {{kind: thinkswitch, backend: m, thinking: "
        f"{{switcher: {tmp_path / 'missing'}, family: qwen3}}}}}}]\n")
    result = run_cli("serve", "--config", str(config), "--port", "9")
    assert result.returncode == 3
    assert f"switchyard: models.reasoner: {tmp_path / 'missing'}: not a thinkswitch artifact" in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_inputs_are_reported_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data.jsonl.gz"
    data.write_text('{"id": "a"}\n')  # named .gz, but not compressed
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"id": "caf\xe9"}\n')
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt"\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    cases = [
        (["split", "--data", str(data), "--out", str(tmp_path)], "data.jsonl.gz: not gzip-compressed UTF-8 text"),
        (["split", "--data", str(latin), "--out", str(tmp_path)], "latin.jsonl: not UTF-8 text"),
        (["split", "--data", str(rows), "--out", str(tmp_path), "--protocol", "leave-one-out"],
         "--protocol leave-one-out needs --holdout BENCH"),
        (["collect", "--prompts", str(rows), "--model", "q=http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")],
         "rows.jsonl:2: not valid JSON"),
        (["collect", "--prompts", str(rows), "--model", "nourl", "--out", str(tmp_path / "o")], "expected NAME=URL"),
        (["eval", "--router", str(tmp_path / "nothing"), "--data", str(rows)], "nothing: not a router artifact"),
        (["thinkswitch-collect", "--questions", str(empty), "--url", "http://127.0.0.1:9/v1", "--model", "m",
          "--out", str(tmp_path / "t.jsonl")], "no questions in"),
        (["split", "--data", str(empty), "--out", str(tmp_path)], "no data lines in"),
    ]
    for argv, message in cases:
        result = run_cli(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (argv, result.stderr)


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _demo_must_not_start_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    def prepare(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo started backends before checking its ports")

    monkeypatch.setattr(stack, "ensure_venv", prepare)
    monkeypatch.setattr(process, "launch", prepare)


def test_demo_checks_its_gateway_port_before_starting_backends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _demo_must_not_start_backends(monkeypatch)
    with _listening() as taken:
        port = taken.getsockname()[1]
        args = build_parser().parse_args(["demo", "--cache", str(tmp_path), "--port", str(port), "--no-serve"])
        assert args.func(args) == 1
    assert f"gateway port {port} is taken" in capsys.readouterr().out


def test_demo_names_how_to_use_other_backend_ports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _demo_must_not_start_backends(monkeypatch)
    with _listening() as taken:
        port = taken.getsockname()[1]
        monkeypatch.setattr(specs, "default_instance",
                            lambda spec, p=None: specs.Instance(spec=spec, port=port, cpu=spec.cpu))
        args = build_parser().parse_args(["demo", "--cache", str(tmp_path), "--port", str(free_port()),
                                          "--no-serve"])
        assert args.func(args) == 1
    out = capsys.readouterr().out
    assert f"backend port {port}" in out and "switchyard backends up --port NAME=PORT" in out


def test_a_demo_request_that_fails_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    demo._ask(f"http://127.0.0.1:{free_port()}", "m")  # nothing listens there
    out = capsys.readouterr().out
    assert "request failed: APIConnectionError" in out and "Traceback" not in out
