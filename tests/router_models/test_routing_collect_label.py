"""`switchyard collect` and `switchyard label` against a real HTTP server on loopback."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from routing_cli import run_cli, serve_in_thread, switchyard

from router_models.answers import extract_answer
from router_models.data import read_records
from router_models.labelling import score_code, score_math

ANSWERS = {"alpha": "Two plus two.\n\\boxed{4}", "beta": "It is 5."}


@pytest.fixture
def fake_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible chat endpoint: candidates answer by name, a judge rates boxed answers 8."""
    seen: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        text = body["messages"][0]["content"]
        if body["model"] == "judge":
            content = "Fine work. Rating: [[8]]" if "boxed" in text else "Weak. Rating: [[3]]"
        elif body["model"] == "parts":  # content parts, which no chat completion answer holds
            content = [{"type": "text", "text": "4"}]
        elif body["model"] not in ANSWERS:
            return web.json_response({"error": {"message": f"The model `{body['model']}` does not exist."}},
                                     status=404)
        else:
            content = ANSWERS[body["model"]]
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve_in_thread(app) as base:
        yield f"{base}/v1", seen


def test_collect_then_label_with_a_judge_and_resume(
    fake_api: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, seen = fake_api
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "prompt": f"What is {i} + {i}?", "meta": {"reference_answer": str(2 * i)}}
            )
            + "\n"
            for i in range(3)
        )
    )
    collected = tmp_path / "collected.jsonl"
    args = [
        "collect",
        "--prompts",
        str(prompts),
        "--out",
        str(collected),
        "--model",
        f"alpha={url}",
        "--model",
        f"beta={url}",
        "--concurrency",
        "2",
    ]
    assert run_cli(*args) == 0
    records = read_records([collected])
    assert sorted(r.id for r in records) == ["q0", "q1", "q2"]
    assert all(r.responses == ANSWERS and r.meta["candidate_models"] == ["alpha", "beta"] for r in records)
    assert len(seen) == 6 and all(body["temperature"] == 0.0 for body in seen)

    assert run_cli(*args) == 0  # resumed: nothing left to ask
    assert len(seen) == 6 and len(read_records([collected])) == 3

    labelled = tmp_path / "labelled.jsonl"
    assert (
        run_cli(
            "label",
            "--data",
            str(collected),
            "--out",
            str(labelled),
            "--method",
            "judge",
            "--judge",
            f"judge={url}",
        )
        == 0
    )
    assert {r.id: r.scores for r in read_records([labelled])} == {
        f"q{i}": {"alpha": 8.0, "beta": 3.0} for i in range(3)
    }
    assert run_cli("label", "--data", str(collected), "--out", str(labelled), "--method", "math") == 0
    assert len(read_records([labelled])) == 3  # already labelled lines are skipped


def test_label_math_reads_the_reference(tmp_path: Path) -> None:
    line = {
        "id": "m",
        "benchmark": "m",
        "prompt": "1+1?",
        "responses": {"a": "so \\boxed{2}", "b": "the answer: 3"},
        "scores": {},
        "meta": {"reference_answer": "2"},
    }
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    assert (
        run_cli(
            "label",
            "--data",
            str(tmp_path / "in.jsonl"),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--method",
            "math",
        )
        == 0
    )
    assert read_records([tmp_path / "out.jsonl"])[0].scores == {"a": 1.0, "b": 0.0}


def test_label_refuses_lines_without_what_the_method_scores_against(sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    for method, field in (("math", "reference_answer"), ("code", "test_asserts")):
        lacking = [r.id for r in read_records([sample_path]) if not r.meta.get(field)]
        assert switchyard("label", "--data", str(sample_path), "--out", str(out), "--method", method) == (
            2, f"switchyard label: {sample_path}: {len(lacking)} of 49 lines lack meta.{field}, which --method "
            f"{method} scores against (the first: {lacking[0]})\n")
    assert switchyard("label", "--data", str(sample_path), "--out", str(out), "--method", "judge") == (
        2, "switchyard label: --method judge needs --judge NAME=URL\n")
    assert not out.exists()


@pytest.mark.parametrize(
    ("response", "reference", "expected"),
    [
        ("The total is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", 1.0),
        ("So we get 1,200 apples.", "1200", 1.0),
        ("\\boxed{3.0}", "3", 1.0),
        ("\\boxed{\\text{(B)}}", "(B)", 1.0),
        ("no digits at all", "4", 0.0),
        ("first 4, then finally 5", "4", 0.0),
        ("It costs \\boxed{\\$18}.", "18", 1.0),
        ("\\boxed{10\\%}", "10", 1.0),
        ("\\boxed{30^\\circ}", "30", 1.0),
        ("\\boxed{\\dfrac{1}{2}}", "0.5", 1.0),
        ("\\boxed{-\\frac{3}{4}}", "-0.75", 1.0),
        ("\\boxed{\\frac{1}{3}}", "0.5", 0.0),
        ("The answer is 42, as shown.", "42", 1.0),
        ("\\boxed{\\sqrt{2}}", "\\sqrt{2}", 1.0),
        ("\\boxed{\\sqrt{2}}", "\\sqrt{3}", 0.0),
    ],
)
def test_math_matching(response: str, reference: str, expected: float) -> None:
    assert score_math(response, reference) == expected


def test_boxed_answer_keeps_nested_braces() -> None:
    assert extract_answer("x \\boxed{1} then \\boxed{\\sqrt{2}}") == "\\sqrt{2}"


async def test_code_runs_unit_tests_in_a_subprocess_with_a_timeout() -> None:
    tests = "assert add(2, 3) == 5"
    assert await score_code("```python\ndef add(a, b):\n    return a + b\n```", tests) == 1.0
    assert await score_code("def add(a, b):\n    return a - b", tests) == 0.0
    assert await score_code("def add(a, b):\n    while True: pass", tests + "\n", timeout_s=1.0) == 0.0


@pytest.mark.parametrize("failure", ["500", "html", "down"])
def test_label_counts_and_names_the_lines_a_failing_judge_left_unscored(tmp_path: Path, failure: str) -> None:
    async def judge(request: web.Request) -> web.Response:
        body = await request.json()
        if "q1" not in body["messages"][0]["content"]:
            return web.json_response({"choices": [{"message": {"content": "Rating: [[7]]"}}]})
        if failure == "html":
            return web.Response(text="<html>busy</html>", content_type="text/html")
        return web.Response(status=500, text="boom")

    line = {"id": "q0", "benchmark": "b", "prompt": "q0", "responses": {"a": "x"}, "scores": {}, "meta": {}}
    data, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    data.write_text("".join(json.dumps({**line, "id": q, "prompt": q}) + "\n" for q in ("q0", "q1")))
    app = web.Application()
    app.router.add_post("/v1/chat/completions", judge)
    with serve_in_thread(app) as base:
        url = "http://127.0.0.1:9/v1" if failure == "down" else f"{base}/v1"
        status, err = switchyard("label", "--data", str(data), "--out", str(out), "--method", "judge", "--judge",
                                 f"judge={url}")
    failed = 2 if failure == "down" else 1
    assert status == 1 and "Traceback" not in err and "never retrieved" not in err
    first = "q[01]" if failure == "down" else "q1"
    assert re.fullmatch(rf"{failed} lines could not be scored \(rerun to retry them\); the first: {first}: .+",
                        err.splitlines()[-1]), err
    assert {r.id: r.scores for r in read_records([out])} == ({} if failure == "down" else {"q0": {"a": 7.0}})


@pytest.mark.parametrize(("timeout", "says"), [("0", "0 is not above 0"), ("-1", "-1 is not above 0"),
                                               ("nan", "'nan' is not a finite number"),
                                               ("inf", "'inf' is not a finite number")])
def test_label_refuses_a_timeout_that_is_not_a_positive_number(tmp_path: Path, timeout: str, says: str) -> None:
    status, stderr = switchyard("label", "--data", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl"),
                                "--method", "code", "--timeout", timeout)
    assert status == 2 and stderr.splitlines()[-1] == f"switchyard label: error: argument --timeout: {says}"


@pytest.mark.parametrize(("flags", "message"), [
    (["--out", "FOLDER"], "--out FOLDER: is a folder, not a file"),
    (["--out", "FOLDER/out.jsonl", "--judge", "j=http://127.0.0.1:9/v1"],
     "--judge is for --method judge; --method math asks no model"),
    (["--out", "FOLDER/out.jsonl", "--api-key-env", "KEY"],
     "--api-key-env is for --method judge; --method math asks no model"),
])
def test_label_refuses_an_unusable_out_or_a_stray_judge_before_reading(
        tmp_path: Path, flags: list[str], message: str) -> None:
    assert switchyard("label", "--data", str(tmp_path / "in.jsonl"), "--method", "math",  # never read
                      *(flag.replace("FOLDER", str(tmp_path)) for flag in flags)) == (
        2, f"switchyard label: {message.replace('FOLDER', str(tmp_path))}\n")


def test_label_does_not_take_unscored_lines_of_out_for_done_ones(tmp_path: Path) -> None:
    line = {"id": "q0", "benchmark": "b", "prompt": "1+1?", "responses": {"a": "\\boxed{2}", "b": "3"}, "scores": {},
            "meta": {"reference_answer": "2"}}
    data, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    data.write_text(json.dumps(line) + "\n" + json.dumps({**line, "id": "q1"}) + "\n")
    label = ["label", "--data", str(data), "--method", "math", "--out"]
    for scores in ({}, {"a": 1.0}):  # collected, not scored; scored for some responses only
        out.write_text(json.dumps({**line, "scores": scores}) + "\n")
        assert switchyard(*label, str(out)) == (
            2, f"switchyard label: --out {out}: 1 lines lack a score for some response (the first: q0): not a file "
            "`label` wrote; choose another --out\n")
    assert switchyard(*label, str(data)) == (
        2, f"switchyard label: --out {data}: 2 lines lack a score for some response (the first: q0): not a file "
        "`label` wrote; choose another --out\n")
    out.write_text(json.dumps({**line, "scores": {"a": 1.0, "b": 0.0}}) + "\n")
    assert switchyard(*label, str(out))[0] == 0
    assert {r.id: r.scores for r in read_records([out])} == dict.fromkeys(("q0", "q1"), {"a": 1.0, "b": 0.0})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"id": "a", "prompt": "p", "meta": [1]}], "IN:1: field 'meta' must be an object, got [1]"),
        ([{"id": "a", "prompt": "p", "meta": None}], "IN:1: field 'meta' must be an object, got None"),
        ([{"id": "a", "prompt": "p", "benchmark": 5}], "IN:1: field 'benchmark' must be a string, got 5"),
        ([{"id": "a", "prompt": "p"}, {"id": "a", "prompt": "q"}], "IN:2: duplicate id 'a' (first at IN:1)"),
    ],
)
def test_collect_refuses_a_bad_prompts_file_before_asking(
    fake_api: tuple[str, list[dict[str, Any]]], tmp_path: Path, lines: list[object], message: str
) -> None:
    url, seen = fake_api
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "out.jsonl"
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert switchyard("collect", "--prompts", str(prompts), "--out", str(out), "--model", f"alpha={url}") == (
        2, f"switchyard collect: {message.replace('IN', str(prompts))}\n")
    assert not seen and not out.exists()


def test_collect_refuses_a_model_named_twice(tmp_path: Path) -> None:
    assert switchyard("collect", "--prompts", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out.jsonl"),
                      "--model", "a=http://127.0.0.1:9/v1", "--model", "b=http://127.0.0.1:9/v1", "--model",
                      "a=http://127.0.0.1:8/v1") == (
        2, "switchyard collect: --model: candidates named more than once: a\n")


def collect_one_prompt(tmp_path: Path, *models: str) -> tuple[int, str, str]:
    """`switchyard collect` of one prompt from `models` (NAME=URL): its exit status, the last line it wrote to
    stderr and what it wrote to --out."""
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "out.jsonl"
    prompts.write_text(json.dumps({"id": "q0", "prompt": "Hi"}) + "\n")
    status, stderr = switchyard("collect", "--prompts", str(prompts), "--out", str(out),
                                *(flag for model in models for flag in ("--model", model)))
    return status, stderr.splitlines()[-1], out.read_text()


def test_collect_names_the_first_failure_and_asks_no_more_after_a_refusal(
    fake_api: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, seen = fake_api
    assert collect_one_prompt(tmp_path, f"alpha={url}", f"gamma={url}") == (
        1, f"1 prompts failed (rerun to retry them); the first: q0: {url}/chat/completions answered 404: "
        '{"error": {"message": "The model `gamma` does not exist."}}', "")
    assert [body["model"] for body in seen].count("gamma") == 1, "a 404 is not asked again"


def test_collect_refuses_an_answer_whose_content_is_not_text(
    fake_api: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, seen = fake_api
    assert collect_one_prompt(tmp_path, f"parts={url}") == (
        1, "1 prompts failed (rerun to retry them); the first: "
        f"q0: {url}/chat/completions: not a chat completion (its content is list)", "")
    assert len(seen) == 1
