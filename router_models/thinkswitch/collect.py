"""`switchyard thinkswitch-collect`: build a thinking dataset from a live OpenAI-compatible endpoint.

Each question is asked k times in each mode (short: thinking suppressed, long: the model's native thinking),
answers are scored against the reference, generated tokens are read from `usage.completion_tokens`, and the
result is written in the dataset format of `data.py`. Every finished sample is appended at once to a journal
(`OUT.samples.jsonl`, whose first line records the model, family, token cap and temperature), so an interrupted
run with the same settings picks up where it stopped; the dataset file is rebuilt from the journal at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_models import answers
from router_models.cli import check_output_file, key_from_env
from router_models.cli.arguments import non_negative_float, positive_int
from router_models.errors import DataFormatError, InputError
from router_models.jsonl import append_lines, completed_lines, json_lines, open_text
from router_models.thinkswitch.data import MODES
from router_models.thinkswitch.families import FAMILIES, REASONING_FIELDS, Mode, apply_family

# what the journal records on its first line: a rerun with other values would mix samples of different runs
SETTINGS = ("model", "family", "max_tokens", "temperature")
THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    answer: str
    benchmark: str


@dataclass(frozen=True)
class Sample:
    """One scored answer: what the journal stores per line (after the first, which records `SETTINGS`)."""

    id: str
    mode: str
    index: int
    correct: bool
    tokens: int | None
    hit_cap: bool


def read_questions(path: str | Path, default_benchmark: str = "custom") -> list[Question]:
    """Questions from JSONL lines with "id", "prompt", "answer" (and optional "benchmark"): a thinking dataset
    file qualifies. Raises `DataFormatError` naming the bad line (an empty prompt, an id seen before)."""
    questions = []
    seen: dict[str, str] = {}
    for where, obj in json_lines(path):
        if (
            not isinstance(obj, dict)
            or not all(isinstance(obj.get(k), str | int) for k in ("id", "prompt"))
            or obj.get("answer") is None
        ):
            raise DataFormatError(f"{where}: needs 'id', 'prompt' and 'answer'")
        if not str(obj["prompt"]).strip():
            raise DataFormatError(f"{where}: 'prompt' is empty")
        if obj.get("benchmark") is not None and not isinstance(obj["benchmark"], str):
            raise DataFormatError(f"{where}: 'benchmark' must be a string, got {obj['benchmark']!r}")
        if str(obj["id"]) in seen:
            raise DataFormatError(f"{where}: duplicate id {str(obj['id'])!r} (first at {seen[str(obj['id'])]})")
        seen[str(obj["id"])] = where
        questions.append(
            Question(
                str(obj["id"]),
                str(obj["prompt"]),
                str(obj["answer"]),
                str(obj.get("benchmark") or default_benchmark),
            )
        )
    return questions


def is_correct(text: str, reference: str) -> bool:
    """Whether the answer `text` commits to, its thinking removed, matches `reference` (`router_models.answers`).
    Thinking is a `<think>` block, or everything up to a lone `</think>` (a template that opens the block in the
    prompt, as R1's does, served without a reasoning parser)."""
    answer = THINK_BLOCK.sub("", text)
    return answers.is_correct(answer.rpartition("</think>")[2], reference)


def cut_while_thinking(message: dict[str, Any], family: str, mode: str, finish_reason: Any) -> bool:
    """Whether a reply is R1's long thinking cut at the cap, served without a reasoning parser: its template
    opens the thinking in the prompt, so the content is all thinking, with no tag to tell, and scores wrong."""
    content = str(message.get("content") or "")
    return (family == "deepseek-r1" and mode == "long" and finish_reason == "length" and "</think>" not in content
            and not any(message.get(name) for name in REASONING_FIELDS))


def answer_text(message: dict[str, Any], mode: str) -> str:
    """The answer of a reply message. A short answer with no content is vLLM's reasoning parser at work (R1
    models: the output after a prefilled `</think>` holds no `</think>` of its own, so it is all filed as
    reasoning), and that reasoning is the answer; a long one with no content was cut while thinking."""
    content = message.get("content")
    if content or mode != "short":
        return content or ""
    return next((message[name] for name in REASONING_FIELDS if message.get(name)), "")


def request_body(
    question: Question, mode: Mode, family: str, model: str, max_tokens: int, temperature: float
) -> dict[str, Any]:
    """The chat request asking `question` in `mode` for a model of reasoning `family`, as the gateway asks."""
    body = {"model": model, "messages": [{"role": "user", "content": question.prompt}], "max_tokens": max_tokens,
            "temperature": temperature}
    return apply_family(body, family, mode)


def read_journal(path: Path) -> list[Sample]:
    """Samples already collected (a torn last line from an interrupted run is ignored)."""
    return _samples(list(completed_lines(path)))


def _samples(lines: list[Any]) -> list[Sample]:
    samples = []
    for line in lines:
        if isinstance(line, dict) and "settings" not in line:
            try:
                samples.append(Sample(**line))
            except TypeError:
                continue
    return samples


def _settings(lines: list[Any]) -> dict[str, Any] | None:
    """The settings (`SETTINGS`) a journal's samples were collected with, from its first line; None where it
    has none (a journal written before they were recorded)."""
    first = lines[0] if lines else None
    settings = first.get("settings") if isinstance(first, dict) else None
    return settings if isinstance(settings, dict) else None


def open_journal(journal: Path, settings: dict[str, Any]) -> set[tuple[str, str, int]]:
    """The (id, mode, index) samples the journal holds; a new journal (or one from before settings were
    recorded) gets `settings` as its first line. Raises `InputError` where its samples were collected with
    other settings, rather than mix them. Samples are appended with `append_lines`, which first cuts off a
    line torn by an interrupted run."""
    lines = list(completed_lines(journal))
    collected, written = _samples(lines), _settings(lines)
    if collected and written is not None and written != settings:
        changed = [key for key in SETTINGS if written.get(key) != settings[key]]
        was = ", ".join(f"{key} {written.get(key)!r}" for key in changed)
        now = ", ".join(f"{key} {settings[key]!r}" for key in changed)
        raise InputError(f"{journal}: its samples were collected with {was}, not {now}: rerun with those to resume, "
                         "or write to another --out")
    if written != settings:
        journal.parent.mkdir(parents=True, exist_ok=True)
        kept = [{"settings": settings}, *(sample.__dict__ for sample in collected)]
        journal.write_text("".join(json.dumps(line) + "\n" for line in kept))
    return {(s.id, s.mode, s.index) for s in collected}


def aggregate(
    questions: Iterable[Question],
    samples: Iterable[Sample],
    model: str,
    max_tokens: int,
    family: str,
    temperature: float,
) -> list[dict[str, Any]]:
    """Dataset lines for every question with at least one sample in each mode."""
    by_key: dict[tuple[str, str], dict[int, Sample]] = {}
    for sample in samples:
        by_key.setdefault((sample.id, sample.mode), {})[sample.index] = sample
    lines = []
    for question in questions:
        modes = {}
        for mode in MODES:
            done = list(by_key.get((question.id, mode), {}).values())
            if not done:
                break
            tokens = [s.tokens for s in done if s.tokens is not None]
            modes[mode] = {
                "samples": len(done),
                "pass_rate": sum(s.correct for s in done) / len(done),
                "mean_tokens": sum(tokens) / len(tokens) if len(tokens) == len(done) else None,
                "hit_cap": sum(s.hit_cap for s in done),
            }
        if len(modes) == len(MODES):
            lines.append(
                {
                    "id": question.id,
                    "benchmark": question.benchmark,
                    "prompt": question.prompt,
                    "answer": question.answer,
                    "model": model,
                    "max_tokens": max_tokens,
                    "modes": modes,
                    "meta": {"family": family, "temperature": temperature},
                }
            )
    return all_or_no_token_counts(lines)


def all_or_no_token_counts(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`lines` with no token counts in a benchmark where some answers came without them (a reply without
    `usage`): the dataset format takes a benchmark's token counts for all its questions or none."""
    lacking = {line["benchmark"] for line in lines
               if any(mode["mean_tokens"] is None for mode in line["modes"].values())}
    for name in sorted(lacking):
        print(f"warning: {name}: some answers came without usage.completion_tokens; the benchmark is written "
              "without token counts", file=sys.stderr)
    for line in lines:
        if line["benchmark"] in lacking:
            for mode in line["modes"].values():
                mode["mean_tokens"] = None
    return lines


async def collect(
    questions: list[Question],
    base_url: str,
    model: str,
    out: Path,
    samples: int = 1,
    family: str = "qwen3",
    max_tokens: int = 2048,
    temperature: float = 0.0,
    concurrency: int = 8,
    api_key: str | None = None,
    request_timeout: float = 600.0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run every missing (question, mode, sample) through the endpoint, journal each, write the dataset.
    Returns the dataset lines and a description of each answer that failed (left for a rerun)."""
    import aiohttp
    from tqdm.asyncio import tqdm

    from router_models.collect import RequestFailed, post_chat

    journal = out.with_name(out.name + ".samples.jsonl")
    settings = {"model": model, "family": family, "max_tokens": max_tokens, "temperature": temperature}
    done = await asyncio.to_thread(open_journal, journal, settings)
    jobs = [
        (q, mode, i)
        for q in questions
        for mode in MODES
        for i in range(samples)
        if (q.id, mode, i) not in done
    ]
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limit = asyncio.Semaphore(concurrency)
    failed: list[str] = []

    async def run(session: Any, sink: Any, question: Question, mode: Mode, index: int) -> None:
        body = request_body(question, mode, family, model, max_tokens, temperature)
        try:  # a failed request or a reply of another shape fails this answer, not the run
            async with limit:
                reply = await post_chat(session, url, body, headers, retries=2)
        except RequestFailed as failure:
            failed.append(f"{question.id} ({mode}): {failure}")
            return
        choice = reply["choices"][0]
        text = answer_text(choice["message"], mode)
        usage = reply.get("usage")
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        thinking = cut_while_thinking(choice["message"], family, mode, choice.get("finish_reason"))
        sample = Sample(
            question.id,
            mode,
            index,
            not thinking and is_correct(text, question.answer),
            completion if isinstance(completion, int) else None,
            choice.get("finish_reason") == "length",
        )
        sink.write(json.dumps(sample.__dict__) + "\n")
        sink.flush()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session:
        with append_lines(journal) as sink:
            await tqdm.gather(
                *(run(session, sink, *job) for job in jobs),
                desc="collect",
                unit="answer",
                disable=not progress,
            )
    lines = aggregate(questions, read_journal(journal), model, max_tokens, family, temperature)
    await asyncio.to_thread(write_dataset, out, lines)
    return lines, failed


def write_dataset(out: Path, lines: list[dict[str, Any]]) -> None:
    """The dataset lines as JSONL, gzipped where `out` ends in `.gz`."""
    with open_text(out, "wt") as sink:
        sink.writelines(json.dumps(line) + "\n" for line in lines)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "thinkswitch-collect",
        help="ask questions in short and long mode through an endpoint and write a thinking dataset",
        description="Run each question k times per reasoning mode through an OpenAI-compatible endpoint (the "
        "gateway or vLLM), score answers against the references (last \\boxed{} or last number), count "
        "generated tokens from usage, and write the ThinkSwitcher dataset format. Resumable: finished "
        "answers are journalled in OUT.samples.jsonl and skipped on the next run.",
    )
    parser.add_argument(
        "--questions",
        required=True,
        metavar="FILE",
        help="JSONL with id, prompt, answer (optional benchmark); a thinking dataset works",
    )
    parser.add_argument("--url", required=True, help="API base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True, help="model name to request")
    parser.add_argument("--out", required=True, metavar="FILE", help="dataset file to write (JSONL)")
    parser.add_argument(
        "-k", "--samples", type=positive_int, default=1, help="answers per question and mode (default 1)"
    )
    parser.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        default="qwen3",
        help="how the modes are requested (default qwen3: chat_template_kwargs.enable_thinking)",
    )
    parser.add_argument(
        "--max-tokens", type=positive_int, default=2048, help="generation cap per answer (default 2048)"
    )
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="sampling temperature (default 0)")
    parser.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight (default 8)")
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-env", metavar="VAR", help="environment variable holding the bearer token, if the endpoint wants one"
    )
    key.add_argument(
        "--api-key",
        metavar="KEY",
        help="the bearer token itself (visible in the process list; --api-key-env keeps it out)",
    )
    parser.add_argument("--benchmark", default="custom", help="benchmark name for questions without one")
    parser.set_defaults(func=collect_command)


def api_key(args: argparse.Namespace) -> str | None:
    """The bearer token: from the variable `--api-key-env` names (`InputError` where it is unset), else
    `--api-key`, else none."""
    key: str | None = key_from_env(args.api_key_env) if args.api_key_env else args.api_key
    return key


def collect_command(args: argparse.Namespace) -> int:
    if not args.url.startswith(("http://", "https://")):
        raise InputError(f"--url: expected an API base URL such as http://127.0.0.1:8000/v1, got {args.url!r}")
    check_output_file("--out", args.out, parent_created=True)
    questions = read_questions(args.questions, args.benchmark)
    if not questions:
        raise InputError(f"no questions in {args.questions}")
    lines, failed = asyncio.run(
        collect(
            questions,
            args.url,
            args.model,
            Path(args.out),
            samples=args.samples,
            family=args.family,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            concurrency=args.concurrency,
            api_key=api_key(args),
        )
    )
    print(f"wrote {len(lines)} of {len(questions)} questions to {args.out}")
    if failed:
        print(f"{len(failed)} answers failed (rerun to retry them); the first: {failed[0]}", file=sys.stderr)
        return 1
    return 0
