"""Training inputs (auxiliary targets from the data's optional fields) and the choice of τ."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from routing_cli import switchyard

from router_models.errors import InputError
from router_models.thinkswitch.curves import Outcomes, sweep
from router_models.thinkswitch.data import ThinkRecord, parse_record, read_records
from router_models.thinkswitch.train import (
    TrainOptions,
    aux_targets,
    aux_value,
    choose_tau,
    read_config,
    tau_point,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "thinking_small.jsonl"


def test_aux_values_read_level_and_other_caps() -> None:
    records = read_records(FIXTURE)
    gsm = next(r for r in records if r.benchmark == "GSM8K" and 512 in r.by_cap)
    math_record = next(r for r in records if "level" in r.meta)
    assert aux_value(gsm, "long_pass@512") == gsm.by_cap[512][1].pass_rate
    assert aux_value(gsm, "short_pass@1024") == gsm.by_cap[1024][0].pass_rate
    assert math.isnan(aux_value(gsm, "level"))  # GSM8K lines carry no level
    assert aux_value(math_record, "level") == pytest.approx((math_record.meta["level"] - 1) / 4)
    assert math.isnan(aux_value(math_record, "long_pass@512"))
    with pytest.raises(ValueError, match="unknown auxiliary target"):
        aux_value(gsm, "long_pass@many")
    table = aux_targets(records, ["level", "long_pass@512"])
    assert table.shape == (len(records), 2)
    assert bool(((table >= 0) & (table <= 1) | torch.isnan(table)).all())



def test_tau_rules_spend_the_budget_or_take_the_most_accurate_point() -> None:
    # Ranked by gain: q0 (long wins), q1 (long loses), q2 and q3 (ties); short 10 tokens, long 50.
    outcomes = Outcomes(
        short=np.array([0.0, 1.0, 1.0, 1.0]),
        long=np.array([1.0, 0.0, 1.0, 1.0]),
        short_tokens=np.full(4, 10.0),
        long_tokens=np.full(4, 50.0),
    )
    curve = sweep(np.array([0.4, 0.3, 0.2, 0.1]), outcomes)  # long shares 0, 1/4, 1/2, 3/4, 1
    budget = {"max_long_share": 0.5, "max_token_ratio": 1.0}
    spend = tau_point(curve, outcomes, TrainOptions(**budget))
    assert spend["long_share"] == 0.5 and spend["tau"] == pytest.approx(0.3)  # the most long within 50%
    best = tau_point(curve, outcomes, TrainOptions(tau_rule="most_accurate", **budget))
    assert best["long_share"] == 0.25 and best["accuracy"] == 1.0
    # mean tokens at 1/4 long are 20 = 0.4 × always-long's 50: a 0.4 token budget stops there
    assert tau_point(curve, outcomes, TrainOptions(max_long_share=1.0, max_token_ratio=0.4))["long_share"] == 0.25
    # nothing affordable but all-short: all-short
    assert tau_point(curve, outcomes, TrainOptions(max_long_share=0.1))["long_share"] == 0.0
    # a budget larger than the questions the switcher predicts a gain on is not spent on the others
    negative = sweep(np.array([0.4, 0.3, -0.2, -0.1]), outcomes)
    assert tau_point(negative, outcomes, TrainOptions(max_long_share=1.0, max_token_ratio=1.0))["tau"] == 0.3
    # where thinking is predicted to pay nowhere, every question goes short, at a τ of 0, not below
    no_gain = sweep(np.array([-0.4, -0.3, -0.2, -0.1]), outcomes)
    for rule in ("spend", "most_accurate"):
        point = tau_point(no_gain, outcomes, TrainOptions(tau_rule=rule, max_long_share=1.0, max_token_ratio=1.0))
        assert (point["tau"], point["long_share"]) == (0.0, 0.0)


def test_the_pooled_tau_keeps_every_benchmark_within_its_own_budget() -> None:
    # "tokens": short 10, long 50 tokens, so a 0.4 token budget allows one of its four questions long;
    # "rates": no token counts, only the long-share budget (100% here) binds.
    line = json.loads(FIXTURE.read_text().splitlines()[0])
    del line["meta"]

    def record(benchmark: str, i: int, tokens: bool) -> ThinkRecord:
        modes = {mode: {"samples": 1, "pass_rate": 1.0, "mean_tokens": count if tokens else None, "hit_cap": 0}
                 for mode, count in (("short", 10.0), ("long", 50.0))}
        return parse_record({**line, "id": f"{benchmark}:{i}", "benchmark": benchmark, "modes": modes})

    records = [record("tokens", i, True) for i in range(4)] + [record("rates", i, False) for i in range(4)]
    gain = np.array([0.4, 0.3, 0.2, 0.1, 0.35, 0.25, 0.15, 0.05])
    options = TrainOptions(max_long_share=1.0, max_token_ratio=0.4, short_retry=False)
    assert choose_tau(gain[:4], records[:4], options) == pytest.approx(0.4)
    assert choose_tau(gain[4:], records[4:], options) == pytest.approx(0.05)
    # Pooled, the question set has no token counts as a whole; τ still stops where "tokens" would send a
    # second question long, instead of sending everything long.
    assert choose_tau(gain, records, options) == pytest.approx(0.35)


def test_an_unknown_tau_rule_is_refused_before_training(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"tau_rule": "greedy"}')
    with pytest.raises(InputError, match="tau_rule must be one of"):
        read_config(str(config))
    with pytest.raises(ValueError, match="tau_rule must be one of"):
        TrainOptions(tau_rule="greedy")


def test_training_on_nothing_usable_is_refused(tmp_path: Path) -> None:
    empty, config = tmp_path / "empty.jsonl", tmp_path / "config.json"
    empty.write_text("")
    train = ["train", "--kind", "thinkswitch", "--out", str(tmp_path / "out"), "--config", str(config)]
    config.write_text("{}")
    assert switchyard(*train, "--data", str(empty)) == (
        2, f"switchyard train: no training questions in {empty} (splits: train, val)\n")
    for name in ("members", "folds"):
        config.write_text(json.dumps({name: 0}))
        assert switchyard(*train, "--data", str(FIXTURE)) == (
            2, f"switchyard train: {config}: {name} must be at least 1, got 0\n")
    assert not (tmp_path / "out").exists()


def test_a_small_or_uninformative_training_set_is_warned_about(tmp_path: Path) -> None:
    line = json.loads(FIXTURE.read_text().splitlines()[0])
    line["modes"]["long"] = {**line["modes"]["short"], "hit_cap": 0}  # long mode changes nothing
    one, config = tmp_path / "one.jsonl", tmp_path / "config.json"
    one.write_text(json.dumps(line) + "\n")
    config.write_text(json.dumps({"splits": ["train", "val", "test"], "epochs": 1, "members": 2, "folds": 2}))
    status, err = switchyard("train", "--kind", "thinkswitch", "--data", str(one), "--out", str(tmp_path / "out"),
                             "--config", str(config), "--quiet")
    assert status == 0
    assert "warning: only 1 training questions of GSM8K: its τ is picked on noise" in err
    assert "warning: the gain of long mode is +0 on every training question of GSM8K" in err
    assert len(err.splitlines()) == 2  # --quiet: the warnings, no progress bar


def test_seed_and_epochs_flags_set_the_switcher_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"epochs": 1, "members": 2, "folds": 2, "hidden": 4}))
    train = ["train", "--kind", "thinkswitch", "--data", str(FIXTURE), "--config", str(config), "--quiet"]

    def manifest(out: str) -> dict[str, object]:
        return dict(json.loads((tmp_path / out / "manifest.json").read_text()))

    assert switchyard(*train, "--out", str(tmp_path / "a"))[0] == 0
    assert switchyard(*train, "--out", str(tmp_path / "b"), "--seed", "3", "--epochs", "2")[0] == 0
    a, b = manifest("a"), manifest("b")
    assert (a["config"]["seed"], a["config"]["epochs"]) == (0, 1)  # type: ignore[index]
    assert (b["config"]["seed"], b["config"]["epochs"]) == (3, 2)  # type: ignore[index]
    assert a["version"] != b["version"]
    for epochs in ("1.5", "nan", "inf", "0"):
        assert switchyard(*train, "--out", str(tmp_path / "c"), "--epochs", epochs) == (
            2, f"switchyard train: --epochs: --kind thinkswitch trains whole epochs, at least 1, not {epochs}\n")
    assert switchyard(*train, "--out", str(tmp_path / "c"), "--k", "5") == (
        2, "switchyard train: --k does not apply to --kind thinkswitch\n")
    assert switchyard(*train, "--out", str(tmp_path / "c"), "--protocol", "all") == (
        2, "switchyard train: --protocol does not apply to --kind thinkswitch\n")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.json", '{"epochs": 10,', "not valid JSON (Expecting property name enclosed in double quotes at line 1 "
         "column 15)"),
        ("c.yaml", "epochs: [1\n", "not valid JSON or YAML (expected ',' or ']', but got '<stream end>' at line 2 "
         "column 1)"),
        ("c.json", "[1]", "expected an object of config fields, got list"),
        ("c.json", '{"epochs": "ten"}', "epochs must be an integer, got 'ten'"),
        ("c.json", '{"lr": true}', "lr must be a number, got True"),
        ("c.json", '{"cap": "512"}', "cap must be an integer or null, got '512'"),
        ("c.json", '{"aux_targets": "level"}', "aux_targets must be a list of strings, got 'level'"),
        ("c.json", '{"folds": 0}', "folds must be at least 1, got 0"),
        ("c.json", '{"members": 3}', "members (3) must be at least folds (5): every fold needs a member held out "
         "of it"),
        ("c.json", '{"dropout": 1}', "dropout must be in [0, 1), got 1"),
        ("c.json", '{"n_features": 8}', "n_features must be 9 (the surface features), got 8"),
        ("c.json", '{"aux_targets": ["long_pass@many"]}', "unknown auxiliary target 'long_pass@many' (known: "
         "short_tokens, long_tokens, long_hit_cap, level, MODE_pass@CAP)"),
        ("c.json", '{"aux_targets": ["long_pass@0"]}', "unknown auxiliary target 'long_pass@0' (known: "
         "short_tokens, long_tokens, long_hit_cap, level, MODE_pass@CAP)"),
        ("c.json", '{"splits": []}', "splits must be some of ['train', 'val', 'test'], not []"),
        ("c.json", '{"cap": 0}', "cap must be at least 1 or null, got 0"),
        ("c.json", '{"lr": Infinity}', "lr must be a finite number above 0, got inf"),
        ("c.json", '{"lr": NaN}', "lr must be a finite number above 0, got nan"),
        ("c.json", '{"weight_decay": Infinity}', "weight_decay must be a finite number at least 0, got inf"),
        ("c.json", '{"margin_weight": 1e999}', "margin_weight must be a finite number at least 0, got inf"),
        ("c.json", '{"max_length": 4096}', "max_length must be at most 512 (the encoder's limit), got 4096"),
        ("c.json", '{"max_token_ratio": NaN}', "max_token_ratio must be a number in (0, 1], got nan"),
        ("c.json", '{"max_token_ratio": 0}', "max_token_ratio must be a number in (0, 1], got 0"),
        ("c.json", '{"max_long_share": Infinity}', "max_long_share must be a number in (0, 1], got inf"),
        ("c.json", '{"max_long_share": 1.5}', "max_long_share must be a number in (0, 1], got 1.5"),
    ],
)
def test_a_bad_config_is_refused_in_one_line_before_the_data_is_read(
        tmp_path: Path, name: str, text: str, message: str) -> None:
    config = tmp_path / name
    config.write_text(text)
    assert switchyard("train", "--kind", "thinkswitch", "--data", str(tmp_path / "missing.jsonl"), "--out",
                      str(tmp_path / "out"), "--config", str(config)) == (2, f"switchyard train: {config}: {message}\n")


def test_a_config_may_be_yaml_and_json_numbers_keep_their_type(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("epochs: 3\nlr: 2.0e-3\nsplits: [train]\n")
    config, options = read_config(str(tmp_path / "c.yaml"))
    assert (config.epochs, config.lr, options.splits) == (3, 0.002, ["train"])
    (tmp_path / "c.json").write_text('{"lr": 2e-3}')  # YAML would read this exponent as a string
    assert read_config(str(tmp_path / "c.json"))[0].lr == 0.002


def test_a_cap_the_data_lacks_is_named(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"cap": 999}')
    record = read_records(FIXTURE)[0]
    assert switchyard("train", "--kind", "thinkswitch", "--data", str(FIXTURE), "--out", str(tmp_path / "out"),
                      "--config", str(tmp_path / "c.json")) == (
        2, f"switchyard train: {FIXTURE}: question {record.id!r} has no results at cap 999 (it has 512, 1024, "
        "2048)\n")


def test_an_out_that_cannot_be_created_fails_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import router_models.thinkswitch.train as trainer

    def train(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained")

    monkeypatch.setattr(trainer, "train", train)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "switcher"
    status, err = switchyard("train", "--kind", "thinkswitch", "--data", str(FIXTURE), "--out", str(out))
    assert (status, err.splitlines()[-1]) == (2, f"switchyard train: {out}: Not a directory")
