"""Every benchmark script runs as documented (`python bench/NAME.py`): its --help works, and counts too small
to measure anything are refused while parsing, before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO

SCRIPTS = sorted(path.name for path in (REPO / "bench").glob("*.py") if "__main__" in path.read_text())


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")


@pytest.mark.parametrize(("script", "args", "says"), [
    ("switcher_latency.py", ["--switcher", "x", "--n", "1"], "argument --n: 1 is not at least 2"),
    ("decision_latency.py", ["--queries", "0"], "argument --queries: 0 is not at least 2"),
    ("router_latency.py", ["--router", "x", "--data", "y", "--queries", "1"],
     "argument --queries: 1 is not at least 2"),
    ("fusion.py", ["--qa", "x", "--size", "0"], "argument --size: 0 is not at least 1"),
    ("fusion.py", ["--qa", "x", "--speed-prompts", "10"], "argument --speed-prompts: invalid choice: 10"),
    ("overhead.py", ["--requests", "zero"], "argument --requests: 'zero' is not a whole number"),
    ("switcher_cv.py", ["x", "--variant", "wide"], "argument --variant: 'wide' is not NAME=JSON"),
    ("switcher_cv.py", ["x", "--variant", 'w={"hiden": 3}'], "argument --variant: w: no config fields hiden"),
    ("switcher_cv.py", ["x", "--variant", 'w={"epochs": "a"}'],
     "argument --variant: w: epochs must be an integer, got 'a'"),
])
def test_counts_too_small_to_measure_are_refused_while_parsing(script: str, args: list[str], says: str) -> None:
    result = run(script, *args)
    assert result.returncode == 2 and says in result.stderr, result.stderr


def test_overhead_measures_a_tiny_load() -> None:
    result = run("overhead.py", "--requests", "5", "--concurrency", "1", "2")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["1", "2"] and all(row[-1] == "0" for row in rows)  # no errors


def test_compare_measures_a_tiny_load_with_fine_cpu_time() -> None:
    result = run("compare.py", "--duration", "0.5", "--rounds", "1", "--pairs", "2", "--concurrency", "1",
                 "--targets", "switchyard-direct", "--output", "-")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| switchyard-direct")]
    assert len(rows) == 2  # json and stream
    for row in rows:
        cpu_ms_per_request = float(row[5])
        assert 0 < cpu_ms_per_request < 100
    assert "proxy CPU time read at" in result.stdout


@pytest.mark.parametrize("script", ["switcher_eval.py", "switcher_cv.py", "switcher_holdout.py"])
def test_data_it_cannot_use_is_one_line_not_a_traceback(script: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for data, says in ((tmp_path / "missing.jsonl", "No such file or directory"),
                       (tmp_path, "Is a directory"),
                       (empty, "questions in")):
        result = run(script, str(data), *(["--plot", str(tmp_path / "p.png")] if script == "switcher_eval.py" else []))
        assert result.returncode == 2 and result.stderr.startswith(f"{script}: ") and says in result.stderr, \
            result.stderr
        assert len(result.stderr.splitlines()) == 1
