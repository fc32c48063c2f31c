"""Forced-token scoring: token texts from vocabulary strings, the request's prompts, reading the reply."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from service.strategies.fusion import forced
from service.strategies.fusion.members import Member, Prompt, ScoringPolicy
from service.strategies.fusion.pieces import token_texts


def test_byte_level_vocabulary_strings_read_as_text() -> None:
    # SmolLM2's tokens of "Hello wörld, it's 3.14 €" (GPT-2 byte-level: Ġ is a space, Ã¶ the bytes of ö)
    strs = ["Hello", "Ġw", "Ã¶r", "ld", ",", "Ġit", "'s", "Ġ", "3", ".", "1", "4", "ĠâĤ¬"]
    text = "Hello wörld, it's 3.14 €"
    assert token_texts(strs, text) == ["Hello", " w", "ör", "ld", ",", " it", "'s", " ", "3", ".", "1", "4", " €"]


def test_sentencepiece_vocabulary_strings_read_as_text() -> None:
    # Gemma's tokens of the same text (▁ is a space; raw bytes are spelled <0xNN>)
    strs = ["▁w", "ör", "ld", ",", "▁it", "'", "s", "▁", "3", ".", "1", "4", "▁€", "<0x0A>"]
    assert token_texts(strs, "Hello wörld, it's 3.14 €\n") == [
        " w", "ör", "ld", ",", " it", "'", "s", " ", "3", ".", "1", "4", " €", "\n"]


@pytest.mark.parametrize("strs, text", [
    (["Ġw", "Ã"], " wö"),  # half of a character's bytes in one token
    (["▁w", "<0xC3>", "<0xB6>"], " wö"),  # the same, as SentencePiece byte tokens
    (["Ġw", "orld"], " word"),  # tokens that do not spell the text
])
def test_tokens_that_do_not_spell_the_text_exactly_give_none(strs: list[str], text: str) -> None:
    assert token_texts(strs, text) is None


# "x " + " It": the context's trailing space merges with the candidate's leading one ("▁▁").
CONTEXT, CONTEXT_IDS = "x ", [5, 6]
TOKENIZED = ([5, 7, 8], ["x", "▁▁", "It"])


def test_one_prompt_per_candidate_token_each_ending_before_it() -> None:
    request = forced.plan(CONTEXT, CONTEXT_IDS, [" It"], [TOKENIZED])
    assert request is not None
    assert request.prompts == [[5], [5, 7]] and request.targets == [7, 8]
    assert request.body() == {"prompt": [[5], [5, 7]], "max_tokens": 1, "temperature": 0.0, "logprobs": 0,
                              "logprob_token_ids": [7, 8], "return_tokens_as_token_ids": True}


def reply_for(request: forced.ForcedPlan, logprob: dict[int, float]) -> dict[str, Any]:
    """What vLLM answers: per prompt, the sampled token and every asked-for id, keyed `token_id:N`."""
    return {"choices": [
        {"index": i, "logprobs": {"top_logprobs": [{"token_id:99": -0.1, **{f"token_id:{t}": logprob[t] + i
                                                                             for t in request.targets}}]}}
        for i in range(len(request.prompts))][::-1]}  # in any order: `index` says which prompt


def test_the_reply_gives_each_token_its_log_probability_at_its_own_position() -> None:
    request = forced.plan(CONTEXT, CONTEXT_IDS, [" It"], [TOKENIZED])
    assert request is not None
    [scores] = forced.read(request, [" It"], reply_for(request, {7: -2.0, 8: -3.0})) or [None]
    assert scores is not None
    # The merged "  " starts one character before the candidate (inside the context), "It" at 1.
    assert scores.starts == [-1, 1]
    assert scores.logprobs == [-2.0, -3.0 + 1]  # prompt 0 scores token 7, prompt 1 token 8


def test_several_candidates_share_one_request() -> None:
    tokenized = [TOKENIZED, ([5, 6, 9, 10], ["x", "▁", "no", "!"])]
    request = forced.plan(CONTEXT, CONTEXT_IDS, [" It", "no!"], tokenized)
    assert request is not None
    assert request.prompts == [[5], [5, 7], [5, 6], [5, 6, 9]]
    first, second = forced.read(request, [" It", "no!"], reply_for(request, {7: -1, 8: -1, 9: -1, 10: -1})) or []
    assert (first.starts, second.starts) == ([-1, 1], [0, 2])
    assert second.logprobs == [-1 + 2, -1 + 3]


def test_tokens_that_end_inside_the_context_are_not_scored() -> None:
    # The candidate re-tokenizes the context's last word too ("ab" + "c" -> "a" + "bc").
    request = forced.plan("ab", [1, 2], ["c"], [([3, 4], ["a", "bc"])])
    assert request is not None
    assert request.prompts == [[3]] and request.targets == [4]


def test_a_backend_that_ignores_the_asked_ids_gives_none() -> None:
    request = forced.plan(CONTEXT, CONTEXT_IDS, [" It"], [TOKENIZED])
    assert request is not None
    sampled_only = {"choices": [{"index": i, "logprobs": {"top_logprobs": [{"It": -0.5}]}} for i in range(2)]}
    assert forced.read(request, [" It"], sampled_only) is None
    assert forced.read(request, [" It"], {"choices": []}) is None


@pytest.mark.parametrize("context_ids, tokenized", [
    ([5, 6], ([5, 7, 8], ["x", "Ġ", "Is"])),  # vocabulary strings that do not spell the text
    ([5, 6], ([5, 6, 8], ["x", "▁", "t"])),  # tokens that leave part of the candidate uncovered
    ([], ([7, 8], ["▁▁", "It"])),  # nothing before the candidate to put in a prompt
])
def test_candidates_forced_scoring_cannot_read_give_none(context_ids: list[int],
                                                         tokenized: forced.Tokenized) -> None:
    assert forced.plan(CONTEXT if context_ids else "", context_ids, [" It"], [tokenized]) is None


def test_more_distinct_tokens_than_vllm_takes_give_none() -> None:
    words = [f"w{i}" for i in range(forced.MAX_TARGETS + 1)]
    candidate = "".join(words)
    request = forced.plan("x", [1], [candidate], [([1, *range(100, 100 + len(words))], ["x", *words])])
    assert request is None


def test_auto_scores_by_forced_tokens_once_the_context_is_long() -> None:
    auto = ScoringPolicy("auto", forced_from_tokens=64)
    assert (auto.method(63), auto.method(64)) == ("echo", "forced")
    assert ScoringPolicy("echo").method(10_000) == "echo"
    assert ScoringPolicy("forced").method(0) == "forced"


def test_a_backend_found_without_forced_scoring_is_tried_again_later() -> None:
    now = 0.0
    member = Member("a", dispatcher=None, no_forced=forced.ForcedOff(retry_s=60, clock=lambda: now))  # type: ignore[arg-type]
    assert not member.forced_unsupported
    member.mark_forced_unsupported()
    now = 59.0
    assert member.forced_unsupported
    now = 61.0
    assert not member.forced_unsupported


class WordBackend:
    """A backend whose tokens are words (`/tokenize`) and whose forced log-probability of token t is -t/100;
    records the largest request it was sent."""

    largest = 0

    def encode(self, backend: str, body: dict[str, Any]) -> bytes:
        return orjson.dumps({**body, "model": backend})

    async def post_json(self, backend: str, path: str, body: dict[str, Any], *, request_id: str = "") -> Any:
        assert path == "/tokenize"
        words = body["prompt"].split(" ")
        strs = [("▁" if i else "") + word for i, word in enumerate(words)]
        return {"tokens": [len(word) for word in words], "token_strs": strs}

    async def post_encoded(self, backend: str, path: str, payload: bytes, *, request_id: str = "",
                           max_tokens: int | None = None) -> Any:
        self.largest = max(self.largest, len(payload))
        body = orjson.loads(payload)
        return {"choices": [{"index": i, "logprobs": {"top_logprobs": [
            {f"token_id:{t}": -t / 100 for t in body["logprob_token_ids"]}]}} for i in range(len(body["prompt"]))]}


@pytest.mark.parametrize("context_words", [10, forced.THREAD_FROM_TOKENS + 10])  # planned on the loop, in a thread
async def test_a_member_scores_by_forced_tokens_whatever_the_contexts_length(context_words: int) -> None:
    backend = WordBackend()
    member = Member("a", dispatcher=backend)  # type: ignore[arg-type]
    context = " ".join(["abc"] * context_words)
    scores = await member.score_forced(Prompt(context, False), "", [" hello wide world", " hi"])
    assert scores is not None
    assert [s.logprobs for s in scores] == [[-0.05, -0.04, -0.05], [-0.02]]
    assert backend.largest > 3 * context_words  # the context goes along with every candidate token
