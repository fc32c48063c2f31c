import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_parser
from service.commands import demo
from service.config import load_settings
from service.local_backends import process, specs, stack
from tests.harness import REPO, free_port


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
    result = run_cli("serve", "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 3
    assert f"switchyard serve: models.reasoner: {tmp_path / 'missing'}: not a thinkswitch artifact" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_fails_before_it_loads_anything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "c.yaml"
    config.write_text("backends: [{name: m, model: m, replicas: ['http://127.0.0.1:9']}]\n"
                      "models: [{name: m, strategy: {kind: direct, backend: m}}]\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 3
    assert result.stderr == f"switchyard serve: cannot listen on 127.0.0.1:{port}: Address already in use\n"


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
    assert f"gateway port {port} is taken" in capsys.readouterr().err


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
    err = capsys.readouterr().err
    assert f"backend port {port}" in err and "switchyard backends up --port NAME=PORT" in err


def test_a_demo_request_that_fails_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    demo._ask(f"http://127.0.0.1:{free_port()}", "m")  # nothing listens there
    out = capsys.readouterr().out
    assert "request failed: APIConnectionError" in out and "Traceback" not in out


@pytest.mark.parametrize("argv", [
    ["demo", "--port", "70000"], ["demo", "--port", "0"], ["serve", "--config", "c.yaml", "--port", "70000"],
    ["sim", "--model", "m", "--port", "70000"], ["sim", "--model", "m", "--port", "1", "--max-concurrency", "-1"],
    ["sim", "--model", "m", "--port", "1", "--fault-rate", "5"],
    ["sim", "--model", "m", "--port", "1", "--latency-ms", "-1"],
    ["sim", "--model", "m", "--port", "1", "--tokens-per-s", "-2"],
    ["sim", "--model", "m", "--port", "1", "--tokens-per-s", "nan"],
    ["sim", "--model", "m", "--port", "1", "--max-tokens", "-3"],
    ["sim", "--model", "m", "--port", "1", "--first-word", "-1"],
    ["sim", "--model", " ", "--port", "1"],
])
def test_out_of_range_options_are_refused_while_parsing(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_demo_refuses_a_gateway_port_of_a_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _demo_must_not_start_backends(monkeypatch)
    args = build_parser().parse_args(["demo", "--cache", str(tmp_path), "--port", "8031", "--no-serve"])
    assert args.func(args) == 2
    assert "gateway port 8031 is the port of backend smollm2-135m-instruct" in capsys.readouterr().err


def test_demo_checks_its_artifacts_before_starting_backends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _demo_must_not_start_backends(monkeypatch)
    config = tmp_path / "deploy/local/cpu.yaml"  # a copy whose switcher is missing, its router there
    config.parent.mkdir(parents=True)
    config.write_text((REPO / "deploy/local/cpu.yaml").read_text().replace("artifacts/thinkswitch", "nothing"))
    (config.parent / "artifacts").symlink_to(REPO / "deploy/local/artifacts")
    monkeypatch.chdir(config.parent)
    args = build_parser().parse_args(["demo", "--config", str(config), "--cache", str(tmp_path), "--port",
                                      str(free_port()), "--no-serve"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "models.4.strategy.thinking.switcher: deploy/local/nothing" in err
    assert "cpu-router" not in err  # found from the config's directory, though not from the working one


def test_demo_exits_130_after_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo.signal, "signal", lambda *args: None)
    monkeypatch.setattr(stack, "up", interrupted)
    monkeypatch.chdir(tmp_path)  # the default config finds its artifacts from anywhere
    args = build_parser().parse_args(["demo", "--cache", str(tmp_path), "--port", str(free_port())])
    assert args.func(args) == 130


def test_a_gateway_that_cannot_start_says_why(tmp_path: Path) -> None:
    switcher = tmp_path / "switcher"
    switcher.mkdir()  # there, but not an artifact
    (tmp_path / "c.yaml").write_text(json.dumps({
        "backends": [{"name": "m", "model": "m", "replicas": [f"http://127.0.0.1:{free_port()}"]}],
        "models": [{"name": "r", "strategy": {"kind": "thinkswitch", "backend": "m",
                                              "thinking": {"switcher": str(switcher), "family": "qwen3"}}}]}))
    gateway = demo._GatewayThread(load_settings(tmp_path / "c.yaml"), free_port())
    with pytest.raises(demo.GatewayStartError, match="not a thinkswitch artifact") as failure:
        gateway.start()
    assert "port" not in str(failure.value).split(": ", 1)[1]

