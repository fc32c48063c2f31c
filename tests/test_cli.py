import subprocess
import sys

from service.cli import build_parser


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
