"""Aligned segment boundaries between tokenizers that split the same text differently."""

from __future__ import annotations

from typing import Any

from service.strategies.fusion.members import Member, Prompt, Sampling
from service.strategies.fusion.segments import aligned_cut, piece_starts, token_ends, token_starts, word_boundaries

TEXT = " The sky is blue today"


def starts_of(pieces: list[str]) -> list[int]:
    return token_starts(pieces, len("".join(pieces)))


def test_token_starts_count_back_from_the_end() -> None:
    # Only the end of an echo lines up with the text: a `<bos>` piece in front is irrelevant.
    pieces = ["<bos>", "Hi", " there"]
    assert token_starts(pieces, len("Hi there")) == [-5, 0, 2]


def test_word_boundaries_sit_before_each_space_run() -> None:
    assert word_boundaries("one two  three\nfour") == [3, 7, 14]
    assert word_boundaries(" lead") == []


def test_cut_at_the_last_word_boundary_every_tokenizer_shares() -> None:
    bpe = starts_of([" The", " sky", " is", " blue", " today"])
    piece = starts_of([" The", " sky", " is", " bl", "ue", " to", "day"])
    # Both start tokens at " sky", " is", " blue", " today"; the draft may end inside "today".
    assert aligned_cut(TEXT, [bpe, piece], final=False) == TEXT.index(" today")


def test_a_boundary_only_one_tokenizer_has_is_not_aligned() -> None:
    first = starts_of([" The", " sky", " is", " blue", " today"])
    # The second tokenizer merges " blue today" into one token: the cut moves back to " blue".
    second = starts_of([" The", " sky", " is", " blue today"])
    assert aligned_cut(TEXT, [first, second], final=False) == TEXT.index(" blue")


def test_a_finished_draft_is_taken_whole() -> None:
    starts = starts_of([" The", " sky", " is", " blue", " today"])
    assert aligned_cut(TEXT, [starts, starts], final=True) == len(TEXT)


def test_without_a_shared_word_boundary_fall_back_to_a_shared_token_boundary() -> None:
    text = "12345678"
    assert aligned_cut(text, [starts_of(["12", "34", "5678"]), starts_of(["1234", "56", "78"])],
                       final=False) == 4
    assert aligned_cut(text, [starts_of(["123", "45678"]), starts_of(["1234", "5678"])], final=False) == len(text)


def test_a_token_straddling_the_context_end_does_not_block_cuts() -> None:
    # The scorer merged the context's last character with the candidate's first word.
    straddling = [-1, 4, 8]
    own = [0, 4, 8]
    assert aligned_cut(" The sky is", [own, straddling], final=False) == 8


# SmolLM2's pieces of " I love it 😀 so much" as vLLM reports them: each token decoded alone, so the two
# tokens of the emoji read "\ufffd" and the pieces are one character longer than the text.
EMOJI = " I love it 😀 so much"
EMOJI_PIECES = [" I", " love", " it", " \ufffd", "\ufffd", " so", " much"]


def test_tokens_of_a_split_character_share_one_start_and_the_others_stay_exact() -> None:
    starts = piece_starts(EMOJI_PIECES, EMOJI)
    assert starts == [0, 2, 7, 10, 10, 12, 15]  # counted back from the end without the split: 12 -> 11
    assert token_ends(starts, len(EMOJI)) == [2, 7, 10, 12, 12, 15, 20]
    assert aligned_cut(EMOJI, [starts], final=False) == 15  # never at 11, inside the emoji's tokens


def test_pieces_beyond_the_text_are_placed_around_it() -> None:
    assert piece_starts(["<bos>", *EMOJI_PIECES], EMOJI) == [-5, 0, 2, 7, 10, 10, 12, 15]  # an echo's <bos>
    # a draft cut at the stop string " so": its tokens join the split run rather than be placed wrong
    assert piece_starts(EMOJI_PIECES[:6], EMOJI[:12]) == [0, 2, 7, 10, 10, 10]


# A SentencePiece model's pieces as some vLLM versions report them: each token decoded alone, without the
# leading space it stands for.
SKY = "A: The sky is blue because of light"
SKY_PIECES = ["<s>", "A", ":", "The", "sky", "is", "blue", "because", "of", "light"]


def test_pieces_that_lost_their_spaces_are_placed_where_the_text_has_them() -> None:
    assert piece_starts(SKY_PIECES, SKY) == [-3, 0, 1, 2, 6, 10, 13, 18, 26, 29]  # each space joins the next token
    candidate = SKY[10:]  # " is blue because of light", as a draft: pieces from its start
    assert piece_starts(SKY_PIECES[5:], candidate, anchor="start") == [0, 3, 8, 16, 19]
    assert piece_starts([*SKY_PIECES[5:7], "because"], candidate[:12], anchor="start") == [0, 3, 8]  # cut at a stop
    assert piece_starts(["is", "red"], " is blue", anchor="start") == [0, 2]  # no spelling at all: as counted


class SkyEcho:
    async def post_json(self, backend: str, path: str, body: dict[str, Any], *, request_id: str = "") -> Any:
        logprobs = [None] + [-1.0] * 4 + [-0.5] * 5  # the context's tokens, then the candidate's
        return {"choices": [{"index": 0, "text": SKY, "logprobs": {"tokens": SKY_PIECES, "token_logprobs": logprobs}}]}


async def test_an_echo_of_pieces_without_their_spaces_scores_the_candidates_tokens_only() -> None:
    member = Member("a", SkyEcho())  # type: ignore[arg-type]
    scores, = await member.score_echo(Prompt("A: The sky", False), "", [SKY[10:]])
    assert (scores.starts, scores.logprobs) == ([0, 3, 8, 16, 19], [-0.5] * 5)


class OneDraft:
    async def post_json(self, backend: str, path: str, body: dict[str, Any], *, request_id: str = "") -> Any:
        return {"choices": [{"text": EMOJI, "finish_reason": "length", "logprobs": {
            "tokens": EMOJI_PIECES, "token_logprobs": [-1.0] * len(EMOJI_PIECES)}}], "usage": {"prompt_tokens": 3}}


async def test_a_drafts_tokens_after_a_split_character_keep_their_offsets() -> None:
    draft = await Member("a", OneDraft()).draft(Prompt("", False), "", 8, Sampling())  # type: ignore[arg-type]
    assert draft.scores.starts == [0, 2, 7, 10, 10, 12, 15]  # " so" starts at 12, not 13
