"""`switchyard split`, `train` and `eval` end to end on the committed sample."""

import gzip
import json
from pathlib import Path

import pytest
from routing_cli import run_cli, switchyard

from router_models import load_router
from router_models.data import load_table, read_records
from router_models.lookahead.config import LookaheadConfig
from router_models.lookahead.train import train_masked

TINY = {
    "block_size": 2,
    "max_query_tokens": 16,
    "batch_size": 8,
    "max_train_queries": 8,
    "max_val_queries": 4,
    "eval_every": 1,
}


def test_split_writes_three_disjoint_parts(sample_path: Path, tmp_path: Path) -> None:
    assert run_cli("split", "--data", str(sample_path), "--out", str(tmp_path)) == 0
    parts = {name: read_records([tmp_path / f"{name}.jsonl.gz"]) for name in ("train", "val", "test")}
    ids = [r.id for part in parts.values() for r in part]
    assert len(ids) == len(set(ids)) == len(read_records([sample_path]))
    assert (
        run_cli(
            "split",
            "--data",
            str(sample_path),
            "--out",
            str(tmp_path / "lobo"),
            "--protocol",
            "leave-one-out",
            "--holdout",
            "MBPP",
        )
        == 0
    )
    with gzip.open(tmp_path / "lobo" / "test.jsonl.gz", "rt") as f:
        assert {json.loads(line)["benchmark"] for line in f} == {"MBPP"}


def test_train_then_eval_writes_the_json_contract_and_a_plot(sample_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    assert (
        run_cli(
            "train",
            "--data",
            str(sample_path),
            "--out",
            str(tmp_path / "la"),
            "--config",
            str(config),
            "--epochs",
            "1",
            "--quiet",
        )
        == 0
    )
    assert load_router(tmp_path / "la").config.block_size == 2
    assert not (tmp_path / "la" / "checkpoint").exists()  # finished runs keep only the artifact
    (tmp_path / "knn.yaml").write_text("k: 3\n")
    assert (
        run_cli(
            "train",
            "--kind",
            "knn",
            "--data",
            str(sample_path),
            "--out",
            str(tmp_path / "knn"),
            "--config",
            str(tmp_path / "knn.yaml"),
        )
        == 0
    )
    assert run_cli("split", "--data", str(sample_path), "--out", str(tmp_path / "split")) == 0

    out, plot = tmp_path / "results.json", tmp_path / "results.png"
    assert (
        run_cli(
            "eval",
            "--router",
            str(tmp_path / "la"),
            "--router",
            str(tmp_path / "knn"),
            "--data",
            str(tmp_path / "split" / "test.jsonl.gz"),
            "--json",
            str(out),
            "--plot",
            str(plot),
        )
        == 0
    )
    results = json.loads(out.read_text())
    assert set(results) == {"average", "benchmarks"}
    names = {"random", "oracle", "best_single", "lookahead", "knn"}
    assert set(results["average"]) == names
    assert results["benchmarks"] and all(set(row) == names for row in results["benchmarks"].values())
    assert {b for b in results["benchmarks"]} <= {r.benchmark for r in read_records([sample_path])}
    assert all(row["random"] == 0.0 for row in results["benchmarks"].values())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flags_that_do_not_apply_are_refused(sample_path: Path, tmp_path: Path) -> None:
    train = ["train", "--data", str(sample_path), "--out", str(tmp_path)]
    assert switchyard(*train, "--kind", "knn", "--block-size", "4") == (
        2, "switchyard train: --block-size does not apply to --kind knn\n")
    assert switchyard(*train, "--kind", "knn", "--resume") == (
        2, "switchyard train: --resume does not apply to --kind knn: it keeps no checkpoints\n")
    (tmp_path / "bad.json").write_text('{"blocks": 3}')
    assert switchyard(*train, "--config", str(tmp_path / "bad.json")) == (
        2, f"switchyard train: {tmp_path / 'bad.json'}: unknown lookahead config fields ['blocks']\n")
    (tmp_path / "bad.json").write_text('{"epochs": "ten"}')
    assert switchyard(*train, "--config", str(tmp_path / "bad.json")) == (
        2, f"switchyard train: {tmp_path / 'bad.json'}: epochs must be a number, got 'ten'\n")
    (tmp_path / "bad.yaml").write_text("k: [3\n")
    assert switchyard(*train, "--kind", "knn", "--config", str(tmp_path / "bad.yaml")) == (
        2, f"switchyard train: {tmp_path / 'bad.yaml'}: not valid JSON or YAML (expected ',' or ']', but got "
        "'<stream end>' at line 2 column 1)\n")


@pytest.mark.parametrize(
    ("flags", "config", "message"),
    [
        (["--epochs", "nan"], None, "--epochs: epochs must be a finite number above 0, got nan"),
        (["--epochs", "inf"], None, "--epochs: epochs must be a finite number above 0, got inf"),
        (["--block-size", "-1"], None, "--block-size: block_size must be at least 0, got -1"),
        (["--block-size", "500"], None, "--block-size: max_query_tokens + block_size must be below 512 (the "
         "encoder's positions), got 564"),
        (["--kind", "mlc"], {"batch_size": 0}, "CONFIG: batch_size must be at least 1, got 0"),
        (["--kind", "mlc"], {"lr": 1e999}, "CONFIG: lr must be a finite number at least 0, got inf"),
        (["--kind", "knn", "--k", "0"], None, "--k: k must be at least 1, got 0"),
        (["--kind", "knn", "--k", "-1"], None, "--k: k must be at least 1, got -1"),
        (["--kind", "knn", "--k", "5"], {"max_query_tokens": 4096}, "CONFIG: max_query_tokens must be at most 512 "
         "(the encoder's limit), got 4096"),
    ],
)
def test_config_out_of_range_is_refused_before_reading_data(
    flags: list[str], config: dict[str, object] | None, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config or {}))
    out = tmp_path / "out"
    status, err = switchyard("train", *flags, "--config", str(path), "--data", str(tmp_path / "none.jsonl"),
                             "--out", str(out))
    assert (status, err) == (2, f"switchyard train: {message.replace('CONFIG', str(path))}\n")
    assert not out.exists()


def test_training_on_nothing_usable_is_refused(sample_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = str(tmp_path / "out")
    cases = [
        (["--candidates", "foo,bar"], "no training queries for candidates foo, bar: all 27 lines of the "
         "training part lack a candidate's score"),
        (["--candidates", "foo"], "routing needs at least 2 candidates, got foo"),
        (["--candidates", "foo,bar,foo"], "candidates named more than once: foo"),
        (["--candidates", "foo, bar ,foo"], "candidates named more than once: foo"),  # names stripped
        (["--candidates", " , "], "routing needs at least 2 candidates, got none"),
        (["--protocol", "all", "--holdout", "MATH"], "--holdout applies to --protocol leave-one-out only (--protocol "
         "all trains on every line)"),
    ]
    for flags, message in cases:
        assert switchyard("train", "--kind", "knn", "--data", str(sample_path), "--out", out, *flags) == (
            2, f"switchyard train: {message}\n")
    assert switchyard("train", "--kind", "knn", "--data", str(empty), "--out", out) == (
        2, f"switchyard train: no data lines in {empty}\n")
    assert not (tmp_path / "out").exists()


def test_a_small_or_uninformative_training_set_is_warned_about(sample_path: Path, tmp_path: Path) -> None:
    status, err = switchyard("train", "--kind", "best_single", "--data", str(sample_path), "--out", str(tmp_path / "a"))
    assert status == 0 and "warning: only 27 training queries" in err and "same routing labels" not in err
    tied = tmp_path / "tied.jsonl"
    tied.write_text("".join(
        json.dumps({**record.to_json(), "scores": dict.fromkeys(record.scores, 1.0)}) + "\n"
        for record in read_records([sample_path])
    ))
    status, err = switchyard("train", "--kind", "best_single", "--data", str(tied), "--out", str(tmp_path / "b"))
    assert status == 0 and "warning: every training query has the same routing labels" in err


def test_quiet_training_shows_no_progress_bar(sample_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    train = ["train", "--kind", "mlc", "--data", str(sample_path), "--config", str(config), "--epochs", "0.5"]
    status, err = switchyard(*train, "--out", str(tmp_path / "a"), "--quiet")
    assert status == 0 and err.splitlines() == ["warning: only 27 training queries: the router's choices will be "
                                                 "mostly noise"]
    status, err = switchyard(*train, "--out", str(tmp_path / "b"))
    assert status == 0 and "train mlc" in err


def test_resuming_with_another_seed_is_refused(sample_path: Path, tmp_path: Path) -> None:
    config, out = tmp_path / "tiny.json", tmp_path / "la"
    config.write_text(json.dumps(TINY))
    table = load_table([sample_path]).subset(range(8))
    train_masked(table, LookaheadConfig(**TINY), workdir=out / "checkpoint", progress=False)
    status, err = switchyard("train", "--data", str(sample_path), "--out", str(out), "--config", str(config),
                             "--resume", "--seed", "5", "--quiet")
    assert (status, err.splitlines()[-1]) == (
        2, f"switchyard train: {out / 'checkpoint' / 'checkpoint.pt'}: written with another seed; remove it or "
        "drop --resume")


def test_a_plot_that_is_not_a_png_is_refused_first(sample_path: Path, tmp_path: Path) -> None:
    assert switchyard("eval", "--router", str(tmp_path / "none"), "--data", str(sample_path), "--plot",
                      str(tmp_path / "x.txt")) == (
        2, f"switchyard eval: --plot {tmp_path / 'x.txt'}: the plot is a PNG image, its name must end in .png\n")


def test_an_output_folder_that_does_not_exist_is_refused_before_scoring(sample_path: Path, tmp_path: Path) -> None:
    for flag, name in (("--json", "r.json"), ("--plot", "r.png")):
        missing = tmp_path / "missing" / name
        assert switchyard("eval", "--router", str(tmp_path / "none"), "--data", str(sample_path), flag,
                          str(missing)) == (
            2, f"switchyard eval: {flag} {missing}: folder {missing.parent} does not exist\n")
        folder = tmp_path / "a-folder.png"
        folder.mkdir(exist_ok=True)
        assert switchyard("eval", "--router", str(tmp_path / "none"), "--data", str(sample_path), flag,
                          str(folder)) == (2, f"switchyard eval: {flag} {folder}: is a folder, not a file\n")


def test_collecting_no_prompts_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    assert switchyard("collect", "--prompts", str(tmp_path / "empty.jsonl"), "--model", "m=http://127.0.0.1:9/v1",
                      "--out", str(tmp_path / "o.jsonl")) == (
        2, f"switchyard collect: no prompts in {tmp_path / 'empty.jsonl'}\n")


def test_routers_with_the_same_candidates_in_another_order_are_compared_column_by_name(
        sample_path: Path, tmp_path: Path) -> None:
    from router_models.baselines import BestSingleConfig, BestSingleRouter

    every = list(read_records([sample_path])[0].scores)
    for name, candidates in (("forward", every), ("reversed", every[::-1])):
        BestSingleRouter.fit(load_table([sample_path], candidates), BestSingleConfig()).save(tmp_path / name)
    out = tmp_path / "results.json"
    assert switchyard("eval", "--router", str(tmp_path / "forward"), "--router", str(tmp_path / "reversed"),
                      "--data", str(sample_path), "--json", str(out))[0] == 0
    average = json.loads(out.read_text())["average"]
    assert average["best_single"] == average["best_single-2"]  # the same model picked, whatever the order


def test_out_holding_something_else_is_refused_unless_forced(sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"kind": "thinkswitch"}')
    train = ["train", "--kind", "best_single", "--data", str(sample_path), "--out", str(out)]
    status, err = switchyard(*train)
    assert (status, err.splitlines()[-1]) == (
        2, f"switchyard train: --out {out}: holds a thinkswitch artifact; choose another directory or pass --force "
        "to write there")
    assert json.loads((out / "manifest.json").read_text()) == {"kind": "thinkswitch"}
    assert switchyard(*train, "--force")[0] == 0 and load_router(out).kind == "best_single"
    assert switchyard(*train)[0] == 0  # retraining the same kind replaces it
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    status, err = switchyard(*train[:-1], str(tmp_path / "notes"))
    assert (status, err.splitlines()[-1]) == (
        2, f"switchyard train: --out {tmp_path / 'notes'}: holds files that are not an artifact; choose another "
        "directory or pass --force to write there")
    status, err = switchyard(*train[:-1], str(tmp_path / "notes" / "todo.txt"))
    assert (status, err.splitlines()[-1]) == (
        2, f"switchyard train: --out {tmp_path / 'notes' / 'todo.txt'}: exists and is not a directory")


def test_switcher_flags_are_refused_with_routers(sample_path: Path, tmp_path: Path) -> None:
    for flag in (["--split", "test"], ["--target-drop", "0"], ["--no-short-retry"]):
        name = flag[0].replace("--no-", "--")
        assert switchyard("eval", "--router", str(tmp_path), "--data", str(sample_path), *flag) == (
            2, f"switchyard eval: {name} applies to --switcher only\n")


def test_an_api_key_variable_that_is_unset_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from router_models.cli import key_from_env
    from router_models.errors import InputError

    monkeypatch.delenv("SWITCHYARD_TEST_KEY", raising=False)
    assert key_from_env(None) is None
    with pytest.raises(InputError, match="--api-key-env SWITCHYARD_TEST_KEY: no such environment variable is set"):
        key_from_env("SWITCHYARD_TEST_KEY")
    assert switchyard("collect", "--prompts", str(tmp_path / "q.jsonl"), "--model", "m=http://127.0.0.1:9/v1",
                      "--out", str(tmp_path / "o"), "--api-key-env", "SWITCHYARD_TEST_KEY") == (
        2, "switchyard collect: --api-key-env SWITCHYARD_TEST_KEY: no such environment variable is set\n")
    monkeypatch.setenv("SWITCHYARD_TEST_KEY", "sk-env")
    assert key_from_env("SWITCHYARD_TEST_KEY") == "sk-env"


def test_eval_refuses_routers_of_other_candidates_and_data_that_scores_none(sample_path: Path, tmp_path: Path) -> None:
    from router_models.baselines import BestSingleConfig, BestSingleRouter

    records = read_records([sample_path])
    every = list(records[0].scores)
    two = every[:2]
    for name, candidates in (("all", every), ("two", two)):
        BestSingleRouter.fit(load_table([sample_path], candidates), BestSingleConfig()).save(tmp_path / name)
    status, err = switchyard("eval", "--router", str(tmp_path / "all"), "--router", str(tmp_path / "two"),
                             "--data", str(sample_path))
    assert (status, err) == (2, f"switchyard eval: --router {tmp_path / 'two'} routes to {', '.join(two)}, but "
                             f"--router {tmp_path / 'all'} to {', '.join(every)}: routers compared must share "
                             "candidates\n")
    unscored = tmp_path / "unscored.jsonl"
    unscored.write_text("".join(json.dumps({**r.to_json(), "scores": {}}) + "\n" for r in records[:3]))
    assert switchyard("eval", "--router", str(tmp_path / "two"), "--data", str(unscored)) == (
        2, f"switchyard eval: no line of {unscored} scores every candidate of the routers ({', '.join(two)}; 3 "
        "lines lack one)\n")
    for drop in ("nan", "inf"):
        assert switchyard("eval", "--switcher", str(tmp_path / "none"), "--data", str(sample_path), "--target-drop",
                          drop) == (2, f"switchyard eval: --target-drop: expected a finite number of points, got {drop}"
                                    "\n")
