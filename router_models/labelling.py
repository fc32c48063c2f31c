"""Score collected responses: reference-answer match (math), unit tests (code), or a judge model.

math  — `meta.reference_answer`; the answer is the last `\\boxed{...}` of the response, else its last
        number; 1 if it equals the reference (after light normalisation), else 0.
code  — `meta.test_asserts` (Python asserts); the response's code (its first ```python block, else the
        whole text) runs with the asserts in a subprocess with a timeout; 1 if it exits cleanly, else 0.
judge — a model behind an OpenAI-compatible endpoint grades each answer 1–10 (MT-Bench style
        "Rating: [[x]]"); an unparseable verdict gives -1, like a missing grade in the routing data.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp

from router_models.answers import is_correct
from router_models.collect import CollectOptions, Endpoint, RequestFailed, chat
from router_models.data import Record
from router_models.errors import InputError
from router_models.jsonl import append_lines, completed_lines

JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the user question displayed below. Be as objective as possible. After a short explanation, rate the "
    'response on a scale of 1 to 10 by strictly following this format: "Rating: [[5]]".\n\n'
    "[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)


def score_math(response: str, reference: str) -> float:
    return float(is_correct(response, reference))


def extract_code(response: str) -> str:
    match = re.search(r"```(?:python|py)?\s*\n(.*?)```", response, re.DOTALL)
    return match.group(1) if match else response


async def score_code(response: str, tests: str, timeout_s: float = 10.0) -> float:
    """1.0 if the response's code passes the asserts in a fresh interpreter within the timeout."""
    with tempfile.TemporaryDirectory() as scratch:
        program = Path(scratch) / "candidate.py"
        program.write_text(extract_code(response) + "\n\n" + tests + "\n")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            str(program),
            cwd=scratch,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return float(await asyncio.wait_for(process.wait(), timeout_s) == 0)
        except TimeoutError:
            process.kill()
            await process.wait()
            return 0.0


def parse_rating(verdict: str) -> float:
    match = re.search(r"\[\[(\d+(?:\.\d+)?)\]\]", verdict) or re.search(r"Rating:\s*(\d+(?:\.\d+)?)", verdict)
    return float(match.group(1)) if match else -1.0


async def score_judge(
    session: aiohttp.ClientSession, judge: Endpoint, question: str, answer: str, options: CollectOptions
) -> float:
    verdict = await chat(session, judge, JUDGE_PROMPT.format(question=question, answer=answer), options)
    return parse_rating(verdict)


def lacking_field(record: Record, method: str) -> str | None:
    """The `meta` field `method` scores against that `record` lacks, or None: math needs a
    `reference_answer` (any, even ""), code a non-empty `test_asserts`."""
    if method == "math" and record.meta.get("reference_answer") is None:
        return "meta.reference_answer"
    if method == "code" and not record.meta.get("test_asserts"):
        return "meta.test_asserts"
    return None


async def label_record(
    record: Record,
    method: str,
    session: aiohttp.ClientSession | None = None,
    judge: Endpoint | None = None,
    options: CollectOptions | None = None,
    timeout_s: float = 10.0,
) -> Record:
    """The record with a score for every response (it has what `method` needs: `require_fields`)."""
    scores: dict[str, float] = {}
    for model, response in record.responses.items():
        if method == "math":
            scores[model] = score_math(response, str(record.meta["reference_answer"]))
        elif method == "code":
            scores[model] = await score_code(response, str(record.meta["test_asserts"]), timeout_s)
        elif method == "judge":
            assert session is not None and judge is not None and options is not None
            scores[model] = await score_judge(session, judge, record.prompt, response, options)
        else:
            raise ValueError(f"unknown labelling method {method!r}")
    return Record(record.id, record.benchmark, record.prompt, record.responses, scores, record.meta)


def labelled_ids(out: Path) -> set[str]:
    """Ids of the lines `out` already scores (every response has a score: what `label_file` writes). Raises
    `InputError` where some line of it lacks a score: `label` did not write it, and appending the scored line
    would repeat its id."""
    done, unscored = set(), []
    for row in completed_lines(out):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            continue
        responses, scores = row.get("responses"), row.get("scores")
        if isinstance(responses, dict) and isinstance(scores, dict) and set(responses) <= set(scores):
            done.add(row["id"])
        else:
            unscored.append(row["id"])
    if unscored:
        raise InputError(f"--out {out}: {len(unscored)} lines lack a score for some response (the first: "
                         f"{unscored[0]}): not a file `label` wrote; choose another --out")
    return done


def require_fields(records: list[Record], method: str, source: str) -> None:
    """Raise `InputError` where some records lack what `method` scores against (`source`: the file they come
    from, for the message); `label_file` expects records that passed."""
    if lacking := [r for r in records if lacking_field(r, method)]:
        raise InputError(
            f"{source}: {len(lacking)} of {len(records)} lines lack {lacking_field(lacking[0], method)}, "
            f"which --method {method} scores against (the first: {lacking[0].id})"
        )


async def label_file(
    records: list[Record],
    out: Path,
    method: str,
    judge: Endpoint | None,
    options: CollectOptions,
    timeout_s: float,
    on_line: Callable[[], None] = lambda: None,
) -> tuple[int, list[str]]:
    """Score records `options.concurrency` at a time, appending each finished line to `out`. Returns how many
    were written and a description of each line that could not be scored (the judge failed: left for a rerun)."""
    limit = asyncio.Semaphore(options.concurrency)
    out.parent.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=options.timeout_s)) as session:

        async def one(record: Record) -> Record | None:
            try:
                async with limit:
                    return await label_record(record, method, session, judge, options, timeout_s)
            except RequestFailed as failure:  # only a judge asks a model: it did not answer, after retries
                failed.append(f"{record.id}: {failure}")
                return None  # this line is not scored

        tasks = [asyncio.ensure_future(one(r)) for r in records]
        try:
            with append_lines(out) as sink:
                for task in asyncio.as_completed(tasks):
                    if (scored := await task) is not None:
                        sink.write(json.dumps(scored.to_json(), ensure_ascii=False) + "\n")
                        sink.flush()
                    on_line()
        finally:  # interrupted (or the sink failed): stop the rest, and retrieve what they raised
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return len(records) - len(failed), failed
