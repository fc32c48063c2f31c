"""Train on a tiny fixture, save, load through the gateway API, predict, evaluate (JSON shape, PNG)."""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from routing_cli import switchyard

from router_models.errors import ArtifactError
from router_models.thinkswitch import load_switcher
from router_models.thinkswitch.curves import Outcomes, above_random, baselines, meets_target, random_mix, sweep
from router_models.thinkswitch.data import ThinkRecord, parse_record, read_records
from router_models.thinkswitch.evaluate import eval_command, evaluate, in_sample_warning, report
from router_models.thinkswitch.train import train_command

FIXTURE = Path(__file__).parents[1] / "fixtures" / "thinking_small.jsonl"
ROW_KEYS = {"accuracy", "mean_tokens", "long_share"}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("switcher")
    config = out / "config.json"
    config.write_text(
        json.dumps({"epochs": 5, "members": 4, "folds": 2, "hidden": 16, "splits": ["train", "val", "test"]})
    )
    args = argparse.Namespace(data=[str(FIXTURE)], out=str(out / "model"), config=str(config))
    assert train_command(args) == 0
    return out / "model"


def test_artifact_layout_and_manifest(artifact: Path) -> None:
    assert (artifact / "model.safetensors").stat().st_size > 0
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["kind"] == "thinkswitch" and manifest["encoder"] == "all-MiniLM-L6-v2"
    assert len(manifest["version"]) == 12
    assert manifest["config"]["members"] == 4 and manifest["config"]["hidden"] == 16
    assert set(manifest["taus"]) == {"GSM8K", "MATH"}
    assert isinstance(manifest["default_tau"], float)
    assert manifest["train_options"]["short_retry"] is True  # the default policy
    assert manifest["format"] == 1


def test_load_and_predict(artifact: Path) -> None:
    switcher = load_switcher(artifact, threads=1)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert switcher.version == manifest["version"] and switcher.default_tau == manifest["default_tau"]
    assert switcher.short_retry is True
    queries = [r.prompt for r in read_records(FIXTURE)[:7]]
    pred = switcher.predict(queries)
    assert pred.shape == (7, 2) and pred.dtype == np.float32
    assert bool(((pred > 0) & (pred < 1)).all())
    # Batching and length-sorting do not change a question's prediction (beyond bfloat16 kernels rounding
    # differently for different batch shapes: ~1e-5, where distinct questions differ by ~1e-3).
    np.testing.assert_allclose(switcher.predict(queries[3:4])[0], pred[3], atol=1e-4)
    np.testing.assert_allclose(switcher.predict(queries[::-1]), pred[::-1], atol=1e-4)
    assert switcher.predict([]).shape == (0, 2)
    assert switcher.go_long(queries, tau=-1.0).all() and not switcher.go_long(queries, tau=1.0).any()


def test_predict_from_many_threads(artifact: Path) -> None:
    switcher = load_switcher(artifact, threads=1)
    queries = [r.prompt for r in read_records(FIXTURE)[:8]]
    expected = switcher.predict(queries)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda q: switcher.predict([q])[0], queries * 3))
    np.testing.assert_allclose(np.stack(results), np.concatenate([expected] * 3), atol=1e-4)


def test_eval_writes_contract_json_and_png(artifact: Path, tmp_path: Path) -> None:
    args = argparse.Namespace(
        switcher=str(artifact),
        data=[str(FIXTURE)],
        json=str(tmp_path / "eval.json"),
        plot=str(tmp_path / "curve.png"),
        split="all",
        target_drop=1.0,
        short_retry=None,
    )
    assert eval_command(args) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    assert set(results) == {"GSM8K", "MATH"}
    for name, result in results.items():
        assert set(result) == {"always_short", "always_long", "oracle", "curve"}
        for key in ("always_short", "always_long", "oracle"):
            assert set(result[key]) == ROW_KEYS
        assert all(set(row) == ROW_KEYS | {"tau"} for row in result["curve"])
        shares = [row["long_share"] for row in result["curve"]]
        assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0
        assert (result["always_long"]["mean_tokens"] is None) == (name == "MATH")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_says_which_questions_the_artifact_trained_on(
        artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = read_records(FIXTURE)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert len(manifest["trained_questions"]) == len({r.prompt for r in records})  # every split of the fixture
    assert in_sample_warning(records[:5], manifest) == (
        "warning: the switcher trained on 5 of these 5 questions: figures on them are in-sample, "
        "not a judgement of new questions")
    new = [replace(r, prompt=r.prompt + " Answer in words.") for r in records[:5]]
    assert in_sample_warning(new, manifest) is None
    assert in_sample_warning(records, {}) is None  # an older manifest does not say
    args = argparse.Namespace(switcher=str(artifact), data=[str(FIXTURE)], json=None, plot=None, split="all",
                              target_drop=1.0, short_retry=None)
    assert eval_command(args) == 0
    assert f"trained on {len(records)} of these {len(records)} questions" in capsys.readouterr().err


def test_curve_baselines_on_hand_made_outcomes() -> None:
    outcomes = Outcomes(
        short=np.array([1.0, 0.0, 1.0, 0.0]),
        long=np.array([1.0, 1.0, 0.0, 0.0]),
        short_tokens=np.array([10.0, 10.0, 10.0, 10.0]),
        long_tokens=np.array([50.0, 50.0, 50.0, 50.0]),
    )
    base = baselines(outcomes)
    assert base["always_short"] == {"accuracy": 0.5, "mean_tokens": 10.0, "long_share": 0.0}
    assert base["oracle"] == {"accuracy": 0.75, "mean_tokens": 20.0, "long_share": 0.25}
    assert random_mix(outcomes, 0.5) == {"accuracy": 0.5, "mean_tokens": 30.0, "long_share": 0.5}
    # A perfect ranking (question 1 first, question 2 last) passes through the oracle.
    curve = sweep(np.array([0.0, 0.9, -0.9, 0.1]), outcomes)
    assert [row["long_share"] for row in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve[1]["accuracy"] == 0.75 and curve[1]["tau"] == pytest.approx(0.9)
    # Always-short ties always-long here, so sending nothing long already meets "0 points below long".
    cheapest = meets_target(curve, outcomes, target_drop=0.0)
    assert cheapest is not None and cheapest["long_share"] == 0.0
    assert (
        meets_target(curve, outcomes, target_drop=-25.0) == curve[1]
    )  # 25 points above long: the oracle point
    assert meets_target(curve, outcomes, target_drop=-50.0) is None


def cut_records() -> list[ThinkRecord]:
    """Four questions, (short right, long right, long cut at 2,048 tokens): (1, 0, cut), (0, 1, -), (1, 1, -),
    (0, 0, cut); short answers take 100 tokens, uncut long ones 500."""
    line = json.loads(FIXTURE.read_text().splitlines()[0])
    modes = [(1.0, 0.0, 1), (0.0, 1.0, 0), (1.0, 1.0, 0), (0.0, 0.0, 1)]
    return [
        parse_record({**line, "id": f"q{i}", "modes": {
            "short": {"samples": 1, "pass_rate": s, "mean_tokens": 100.0},
            "long": {"samples": 1, "pass_rate": lo, "mean_tokens": 2048.0 if cut else 500.0, "hit_cap": cut}}})
        for i, (s, lo, cut) in enumerate(modes)
    ]


def test_short_retry_changes_the_curve_not_the_baselines() -> None:
    records = cut_records()
    gain = np.array([[0.5, 0.6], [0.5, 0.9], [0.5, 0.5], [0.5, 0.7]])
    plain, = evaluate(gain, records, {}, 10.0)
    retried, = evaluate(gain, records, {}, 10.0, short_retry=True)
    assert retried.baselines == plain.baselines
    assert plain.baselines["always_long"]["accuracy"] == 0.5
    assert plain.curve[-1]["accuracy"] == 0.5 and retried.curve[-1]["accuracy"] == 0.75
    assert retried.curve[-1]["mean_tokens"] == (2148 + 500 + 500 + 2148) / 4
    assert "long, short retry" in report([retried], 1.0) and "long, short retry" not in report([plain], 1.0)


def test_the_curve_with_the_retry_is_judged_against_random_mixing_with_the_retry() -> None:
    records = cut_records()
    # Ranked worst first: the cut question both modes miss, then one both get right. As measured, random
    # mixing scores 50% at every share, which this curve matches; with the retry it scores more.
    pred = np.array([[0.5, 0.7], [0.5, 0.6], [0.5, 0.8], [0.5, 0.9]])
    result, = evaluate(pred, records, {}, 10.0, short_retry=True)
    assert [row["accuracy"] for row in result.curve[:3]] == [0.5, 0.5, 0.5]
    assert above_random(result.curve, result.outcomes)
    assert not above_random(result.curve, result.switched)
    printed = report([result], 1.0)
    assert "curve above random mixing at every long share: True" in printed
    assert "... and above it with the same retry: False" in printed


def test_a_checkpoint_without_question_offset_reads_the_offset_from_the_question(
        artifact: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    del manifest["config"]["question_offset"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "model.safetensors").write_bytes((artifact / "model.safetensors").read_bytes())
    assert load_switcher(old).head.config.question_offset is True
    assert load_switcher(artifact).head.config.question_offset is False


def test_a_target_drop_of_zero_is_kept(artifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert switchyard("eval", "--switcher", str(artifact), "--data", str(FIXTURE), "--target-drop", "0")[0] == 0
    out = capsys.readouterr().out
    assert "≤0 pt below long" in out and "≤1 pt below long" not in out


def test_a_manifest_without_default_tau_is_an_artifact_error(artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    del manifest["default_tau"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    (broken / "model.safetensors").write_bytes((artifact / "model.safetensors").read_bytes())
    message = f"{broken}: incomplete thinkswitch artifact: its manifest has no 'default_tau'"
    with pytest.raises(ArtifactError) as error:
        load_switcher(broken)
    assert str(error.value) == message
    assert switchyard("eval", "--switcher", str(broken), "--data", str(FIXTURE)) == (
        2, f"switchyard eval: {message}\n")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format=2), "unsupported thinkswitch artifact format 2 (this version reads 1)"),
        (lambda m: m["config"].update(layers=3), "thinkswitch config fields unknown to this version: ['layers']"),
        (lambda m: m["config"].update(hidden="16"), "cannot load this thinkswitch artifact: config: hidden must be "
         "an integer, got '16'"),
        (lambda m: m.update(default_tau=float("nan")), "corrupt thinkswitch artifact: manifest 'default_tau' is not a "
         "finite number"),
        *((lambda m, taus=taus: m.update(taus=taus), "corrupt thinkswitch artifact: manifest 'taus' is not an object "
           "of finite numbers") for taus in ([1], "x", {"GSM8K": "0.1"}, {"GSM8K": float("inf")})),
        *((lambda m, options=options: m.update(train_options=options), "corrupt thinkswitch artifact: manifest "
           "'train_options' is not an object with a boolean short_retry and a cap of a positive integer or null")
          for options in (None, [1], {"short_retry": "yes"}, {"cap": "512"}, {"cap": 0})),
        *((lambda m, questions=questions: m.update(trained_questions=questions), "corrupt thinkswitch artifact: "
           "manifest 'trained_questions' is not a list of strings") for questions in (1, [1], "ab")),
    ],
)
def test_a_manifest_of_another_format_or_config_is_refused(
        artifact: Path, tmp_path: Path, change: object, message: str) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    del manifest["format"]  # written before the field existed: format 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "model.safetensors").write_bytes((artifact / "model.safetensors").read_bytes())
    assert load_switcher(tmp_path).version == manifest["version"]
    change(manifest)  # type: ignore[operator]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as error:
        load_switcher(tmp_path)
    assert str(error.value) == f"{tmp_path}: {message}"


def test_eval_takes_the_data_at_the_cap_the_switcher_was_trained_at(artifact: Path, tmp_path: Path) -> None:
    capped = tmp_path / "capped"
    capped.mkdir()
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["train_options"]["cap"] = 512
    (capped / "manifest.json").write_text(json.dumps(manifest))
    (capped / "model.safetensors").write_bytes((artifact / "model.safetensors").read_bytes())
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("".join(line for line in FIXTURE.read_text().splitlines(keepends=True) if '"GSM8K"' in line))
    for switcher, cap in ((artifact, None), (capped, 512)):
        out = tmp_path / f"{cap}.json"
        assert switchyard("eval", "--switcher", str(switcher), "--data", str(gsm), "--json", str(out))[0] == 0
        records = [record.at_cap(cap) for record in read_records(gsm)]
        expected = baselines(Outcomes.of(records))["always_long"]
        assert json.loads(out.read_text())["GSM8K"]["always_long"] == pytest.approx(expected)
    status, err = switchyard("eval", "--switcher", str(capped), "--data", str(FIXTURE))
    math_id = next(r.id for r in read_records(FIXTURE) if r.benchmark == "MATH")
    assert (status, err) == (2, f"switchyard eval: question {math_id!r} has no results at cap 512 (it has none): "
                             "the switcher was trained at that cap (train_options.cap)\n")


def test_eval_shows_the_gateways_default_tau_where_a_benchmark_has_its_own() -> None:
    line = json.loads(FIXTURE.read_text().splitlines()[0])
    records = [parse_record({**line, "id": f"q{i}"}) for i in range(4)]
    pred = np.array([[0.5, 0.9], [0.5, 0.7], [0.5, 0.6], [0.5, 0.5]])  # gains 0.4, 0.2, 0.1, 0.0
    own, = evaluate(pred, records, {line["benchmark"]: 0.15}, 0.3)
    assert own.chosen["long_share"] == 0.5 and own.at_default is not None and own.at_default["long_share"] == 0.25
    assert "... at default τ" in report([own], 1.0)
    pooled, = evaluate(pred, records, {}, 0.3)
    assert pooled.at_default is None and "at default τ" not in report([pooled], 1.0)
