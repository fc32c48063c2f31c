"""Every benchmark script runs as documented (`python bench/NAME.py`): its --help works, and counts too small
to measure anything are refused while parsing, before any work."""

from __future__ import annotations

import subprocess
import sys

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
