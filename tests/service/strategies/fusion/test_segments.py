"""Aligned segment boundaries between tokenizers that split the same text differently."""

from __future__ import annotations

from service.strategies.fusion.segments import aligned_cut, token_starts, word_boundaries

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
