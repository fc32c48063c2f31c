"""`switchyard collect` and `switchyard label` against a real HTTP server on loopback."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from routing_cli import run_cli, serve_in_thread, switchyard

from router_models.data import read_records
from router_models.labelling import extract_answer, score_code, score_math

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
