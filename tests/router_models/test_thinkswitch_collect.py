"""The collect tool against a loopback OpenAI-compatible server: request bodies, scoring, tokens, resuming, the key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from routing_cli import serve_in_thread, switchyard

from router_models.thinkswitch.collect import (
    Question,
    answer_text,
    api_key,
    collect,
    cut_while_thinking,
    is_correct,
    read_journal,
    request_body,
)
from router_models.thinkswitch.data import read_records
from service.cli import build_parser

QUESTIONS = [
    Question("q1", "What is 2 + 3?", "5", "toy"),
    Question("q2", "What is 1,000 + 234?", "1234", "toy"),
]


class FakeEndpoint:
    """Long mode (thinking on) always right with 400 tokens; short mode wrong on q2 with 50 tokens."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_first = 0
        self.refuse = ""  # questions containing this text get a 400
        self.no_usage = ""  # questions containing this text are answered without `usage`

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"error": "busy"}, status=503)
        thinking = body["chat_template_kwargs"]["enable_thinking"]
        question = body["messages"][0]["content"]
        if self.refuse and self.refuse in question:
            return web.json_response({"error": "bad request"}, status=400)
        answer = "1,234" if "1,000" in question else "5"
        if not thinking and "1,000" in question:
            answer = "1,034"
        content = (
            f"<think>adding up 7</think>The answer is \\boxed{{{answer}}}."
            if thinking
            else f"So the total is {answer}."
        )
        tokens = 400 if thinking else 50
        reply: dict[str, Any] = {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "length" if tokens >= body["max_tokens"] else "stop",
                }
            ],
        }
        if not (self.no_usage and self.no_usage in question):
            reply["usage"] = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        return web.json_response(reply)


@pytest.fixture
def endpoint() -> Iterator[tuple[str, FakeEndpoint]]:
    """The fake endpoint served from its own thread, so commands that run their own event loop can use it too."""
    fake = FakeEndpoint()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    with serve_in_thread(app) as base:
        yield f"{base}/v1", fake


async def test_collect_writes_dataset_format(endpoint: tuple[str, FakeEndpoint], tmp_path: Path) -> None:
    url, fake = endpoint
    out = tmp_path / "collected.jsonl"
    await collect(QUESTIONS, url, "toy-model", out, samples=2, max_tokens=300, concurrency=3, progress=False)
    assert len(fake.bodies) == 2 * 2 * 2
    assert (
        sorted(b["chat_template_kwargs"]["enable_thinking"] for b in fake.bodies) == [False] * 4 + [True] * 4
    )
    assert all(b["model"] == "toy-model" and b["max_tokens"] == 300 for b in fake.bodies)
    records = {r.id: r for r in read_records(out)}  # the documented loader accepts the output
    assert records["q1"].short.pass_rate == 1.0 and records["q2"].short.pass_rate == 0.0
    assert records["q2"].long.pass_rate == 1.0 and records["q2"].long.samples == 2
    assert records["q1"].short.mean_tokens == 50.0 and records["q1"].long.mean_tokens == 400.0
    assert records["q1"].long.hit_cap == 2 and records["q1"].short.hit_cap == 0


async def test_collect_resumes_from_journal(endpoint: tuple[str, FakeEndpoint], tmp_path: Path) -> None:
    url, fake = endpoint
    out = tmp_path / "collected.jsonl"
    journal = tmp_path / "collected.jsonl.samples.jsonl"
    journal.write_text(
        json.dumps({"id": "q1", "mode": "short", "index": 0, "correct": True, "tokens": 50, "hit_cap": False})
        + "\n"
        + '{"id": "q1", "mo'
    )  # torn last line
    fake.fail_first = 1  # one transient 503, retried
    await collect(QUESTIONS, url, "toy-model", out, samples=1, progress=False)
    asked = [(b["messages"][0]["content"], b["chat_template_kwargs"]["enable_thinking"]) for b in fake.bodies]
    assert ("What is 2 + 3?", False) not in asked[1:]  # the journalled sample is not asked again
    assert len(asked) == 1 + 3
    assert len(read_journal(journal)) == 4
    calls = len(fake.bodies)
    await collect(QUESTIONS, url, "toy-model", out, samples=1, progress=False)
    assert len(fake.bodies) == calls  # nothing left to ask
    assert len(read_records(out)) == 2


@pytest.mark.parametrize(
    ("family", "mode", "expected"),
    [
        ("qwen3", "short", {"chat_template_kwargs": {"enable_thinking": False}}),
        ("reasoning-effort", "long", {"reasoning_effort": "high"}),
        ("deepseek-r1", "short", {"continue_final_message": True, "add_generation_prompt": False}),
    ],
)
def test_request_bodies_per_family(family: str, mode: str, expected: dict[str, Any]) -> None:
    body = request_body(QUESTIONS[0], mode, family, "m", 128, 0.0)
    assert body == {
        "model": "m",
        "max_tokens": 128,
        "temperature": 0.0,
        "messages": body["messages"],
        **expected,
    }
    if family == "deepseek-r1":
        assert body["messages"][-1] == {"role": "assistant", "content": "<think>\n\n</think>\n\n"}


def test_scoring() -> None:
    assert is_correct("x = 3, so \\boxed{1,234}", "1234")
    assert is_correct("<think>maybe 7</think> It is 42.", "42")
    assert not is_correct("<think>42</think> I think 41.", "42")
    assert not is_correct("no number here", "42")
    assert is_correct("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}")
    assert is_correct("<think>so 17?</think> It costs \\boxed{\\$18}.", "18")  # the scorer label uses too
    assert is_correct("\\boxed{\\dfrac{1}{2}}", "0.5")
    # R1's template opens the thinking in the prompt: without a reasoning parser only its end is in the reply
    assert not is_correct("so 42?\n</think>\n\nIt is 41.", "42")
    assert is_correct("so 41?\n</think>\n\nIt is 42.", "42")


def test_r1_thinking_cut_at_the_cap_without_a_parser_scores_wrong() -> None:
    cut = {"content": "Let me see, 6 times 7 is 42"}
    assert cut_while_thinking(cut, "deepseek-r1", "long", "length")
    assert not cut_while_thinking(cut, "deepseek-r1", "long", "stop")
    assert not cut_while_thinking(cut, "qwen3", "long", "length")  # its thinking opens in the reply: <think>
    assert not cut_while_thinking({**cut, "reasoning": "..."}, "deepseek-r1", "long", "length")  # the answer, cut
    assert not cut_while_thinking({"content": "hm</think> 42"}, "deepseek-r1", "long", "length")


def test_a_short_answer_filed_as_reasoning_is_the_answer() -> None:
    # vLLM's deepseek_r1 parser after the short-mode prefill: no </think> in the output, all of it reasoning
    assert answer_text({"content": None, "reasoning": "The answer is 4."}, "short") == "The answer is 4."
    assert answer_text({"content": None, "reasoning_content": "4"}, "short") == "4"
    assert answer_text({"content": "4", "reasoning": "2 + 2"}, "short") == "4"
    assert answer_text({"content": None, "reasoning": "Let me think... 4"}, "long") == ""  # cut while thinking


def test_api_key_from_the_environment_or_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["thinkswitch-collect", "--questions", "q.jsonl", "--url", "http://x/v1", "--model", "m", "--out", "o"]
    monkeypatch.setenv("REASONER_KEY", "sk-env")
    assert api_key(build_parser().parse_args([*base, "--api-key-env", "REASONER_KEY"])) == "sk-env"
    assert api_key(build_parser().parse_args([*base, "--api-key", "sk-arg"])) == "sk-arg"
    assert api_key(build_parser().parse_args(base)) is None
    with pytest.raises(SystemExit):  # one or the other
        build_parser().parse_args([*base, "--api-key", "sk-arg", "--api-key-env", "REASONER_KEY"])


def test_failed_answers_are_counted_and_the_rest_kept(endpoint: tuple[str, FakeEndpoint], tmp_path: Path) -> None:
    url, fake = endpoint
    questions, out = tmp_path / "questions.jsonl", tmp_path / "out.jsonl"
    questions.write_text("".join(json.dumps(q.__dict__) + "\n" for q in QUESTIONS))
    command = ["thinkswitch-collect", "--questions", str(questions), "--url", url, "--model", "m", "--out", str(out),
               "--concurrency", "1"]
    fake.refuse = "1,000"  # q2 is refused in both modes
    status, err = switchyard(*command)
    assert status == 1
    assert err.splitlines()[-1].startswith("2 answers failed (rerun to retry them); the first: q2 (")
    assert "400" in err.splitlines()[-1] and "Traceback" not in err
    assert [r.id for r in read_records(out)] == ["q1"]
    asked = len(fake.bodies)
    fake.refuse = ""
    assert switchyard(*command)[0] == 0  # the rerun asks only what failed
    assert len(fake.bodies) == asked + 2 and [r.id for r in read_records(out)] == ["q1", "q2"]


@pytest.mark.parametrize("command", ["thinkswitch-collect", "collect", "label"])
def test_a_concurrency_below_one_is_refused(command: str, tmp_path: Path) -> None:
    argv = {
        "thinkswitch-collect": ["--questions", "q.jsonl", "--url", "http://127.0.0.1:9/v1", "--model", "m"],
        "collect": ["--prompts", "q.jsonl", "--model", "m=http://127.0.0.1:9/v1"],
        "label": ["--data", "q.jsonl", "--method", "math"],
    }[command]
    status, err = switchyard(command, *argv, "--out", str(tmp_path / "o"), "--concurrency", "0")
    assert status == 2 and err.splitlines()[-1] == (
        f"switchyard {command}: error: argument --concurrency: 0 is not at least 1")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"id": "q1", "prompt": "", "answer": "5"}], "IN:1: 'prompt' is empty"),
        ([{"id": "q1", "prompt": " \n", "answer": "5"}], "IN:1: 'prompt' is empty"),
        ([{"id": "q1", "prompt": "1+4?", "answer": "5", "benchmark": ["toy"]}],
         "IN:1: 'benchmark' must be a string, got ['toy']"),
        ([{"id": "q1", "prompt": "1+4?", "answer": "5"}, {"id": "q2", "prompt": "2+2?", "answer": "4"},
          {"id": "q1", "prompt": "2+3?", "answer": "5"}], "IN:3: duplicate id 'q1' (first at IN:1)"),
        ([{"id": 1, "prompt": "1+4?", "answer": "5"}, {"id": "1", "prompt": "2+3?", "answer": "5"}],
         "IN:2: duplicate id '1' (first at IN:1)"),
    ],
)
def test_bad_questions_are_refused_before_asking(
        endpoint: tuple[str, FakeEndpoint], tmp_path: Path, lines: list[object], message: str) -> None:
    url, fake = endpoint
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert switchyard("thinkswitch-collect", "--questions", str(questions), "--url", url, "--model", "m", "--out",
                      str(tmp_path / "out.jsonl")) == (
        2, f"switchyard thinkswitch-collect: {message.replace('IN', str(questions))}\n")
    assert not fake.bodies and not (tmp_path / "out.jsonl.samples.jsonl").exists()


def test_a_rerun_with_other_settings_is_refused(endpoint: tuple[str, FakeEndpoint], tmp_path: Path) -> None:
    url, fake = endpoint
    questions, out = tmp_path / "questions.jsonl", tmp_path / "out.jsonl"
    questions.write_text("".join(json.dumps(q.__dict__) + "\n" for q in QUESTIONS))
    command = ["thinkswitch-collect", "--questions", str(questions), "--url", url, "--model", "m", "--out", str(out)]
    assert switchyard(*command, "--max-tokens", "300")[0] == 0
    journal = tmp_path / "out.jsonl.samples.jsonl"
    assert json.loads(journal.read_text().splitlines()[0]) == {
        "settings": {"model": "m", "family": "qwen3", "max_tokens": 300, "temperature": 0.0}}
    asked = len(fake.bodies)
    assert switchyard(*command, "--max-tokens", "4096", "--temperature", "0.7") == (
        2, f"switchyard thinkswitch-collect: {journal}: its samples were collected with max_tokens 300, temperature "
        "0.0, not max_tokens 4096, temperature 0.7: rerun with those to resume, or write to another --out\n")
    assert switchyard(*command, "--family", "reasoning-effort", "--max-tokens", "300")[0] == 2
    assert len(fake.bodies) == asked and len(read_journal(journal)) == 4
    assert switchyard(*command, "--max-tokens", "300")[0] == 0 and len(fake.bodies) == asked  # the same: resumed


async def test_a_gz_dataset_is_gzipped_and_a_benchmark_with_missing_usage_has_no_token_counts(
        endpoint: tuple[str, FakeEndpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, fake = endpoint
    fake.no_usage = "1,000"  # q2's answers come without usage: the dataset takes all counts or none
    out = tmp_path / "new" / "collected.jsonl.gz"  # its folder is created
    await collect(QUESTIONS, url, "toy-model", out, progress=False)
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    records = read_records(out)  # the loader refuses a benchmark with some counts missing
    assert [r.short.mean_tokens for r in records] == [None, None]
    assert "toy: some answers came without usage.completion_tokens" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--out", "FOLDER"], "switchyard thinkswitch-collect: --out FOLDER: is a folder, not a file"),
    (["--out", "FOLDER/questions.jsonl/o.jsonl"], "switchyard thinkswitch-collect: --out "
     "FOLDER/questions.jsonl/o.jsonl: FOLDER/questions.jsonl is a file, not a folder"),
    (["--out", "FOLDER/o.jsonl", "--temperature", "nan"], "switchyard thinkswitch-collect: error: argument "
     "--temperature: 'nan' is not a finite number"),
    (["--out", "FOLDER/o.jsonl", "--url", "127.0.0.1:8000/v1"], "switchyard thinkswitch-collect: --url: expected "
     "an API base URL such as http://127.0.0.1:8000/v1, got '127.0.0.1:8000/v1'"),
])
def test_an_unusable_out_or_temperature_is_refused_before_asking(
        endpoint: tuple[str, FakeEndpoint], tmp_path: Path, flags: list[str], message: str) -> None:
    url, fake = endpoint
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q.__dict__) + "\n" for q in QUESTIONS))
    status, err = switchyard("thinkswitch-collect", "--questions", str(questions), "--url", url, "--model", "m",
                             *(flag.replace("FOLDER", str(tmp_path)) for flag in flags))
    assert status == 2 and err.splitlines()[-1] == message.replace("FOLDER", str(tmp_path))
    assert not fake.bodies


async def test_a_torn_last_line_is_cut_before_the_next_answers_are_journalled(
        endpoint: tuple[str, FakeEndpoint], tmp_path: Path) -> None:
    url, fake = endpoint
    out, journal = tmp_path / "collected.jsonl", tmp_path / "collected.jsonl.samples.jsonl"
    await collect(QUESTIONS[:1], url, "toy-model", out, progress=False)
    journal.write_text(journal.read_text() + '{"id": "q2", "mo')  # the run was stopped mid-line
    await collect(QUESTIONS, url, "toy-model", out, progress=False)
    lines = journal.read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == 1 + 4  # settings, then 4 whole samples
    assert len(read_records(out)) == 2
