"""Aligned segment boundaries: where a candidate may be cut so that every member's tokens agree.

Offsets are character positions inside one candidate segment (0 = where the shared context ends).
A member's *boundaries* are the offsets where one of its tokens starts; a token that straddles the
context end starts at a negative offset. A cut is *aligned* when it is a boundary for every member,
so each member's tokens of the segment are exactly the tokens before the cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal


def token_starts(pieces: Sequence[str], text_length: int) -> list[int]:
    """Start offset of each token, for the token pieces that end a text of `text_length` characters.

    `pieces` are the decoded token strings covering (at least) the end of the text; offsets are counted
    back from the end, so whatever precedes the text (a chat template, `<bos>`) does not matter.
    """
    starts = []
    end = text_length
    for piece in reversed(pieces):
        end -= len(piece)
        starts.append(end)
    starts.reverse()
    return starts


def piece_starts(pieces: Sequence[str], text: str, *, anchor: Literal["start", "end"] = "end") -> list[int]:
    """Start offset of each token, for the pieces vLLM reports with log-probabilities (each token decoded
    alone) that cover `text`, possibly with more before it (`<bos>`) or after it (a stop string).

    Clean pieces are placed from the `anchor` end of the text: `end` (the default) for pieces that may
    begin before the text (an echoed prompt), `start` for pieces that begin with it and may run past it
    (a draft cut at a stop string).

    A character split across tokens reads "\ufffd" in each part, so such pieces do not spell the text:
    every token from the first such piece to the last starts, here, where the first does (a character
    boundary), so that no cut falls among them; the clean pieces around them are placed exactly. Pieces
    that lost spaces (`restored_starts`) are placed where the text has them.
    """
    split = [i for i, piece in enumerate(pieces) if "\ufffd" in piece]
    if not split:
        joined = "".join(pieces)
        spelled = joined.startswith(text) if anchor == "start" else joined.endswith(text) or text.endswith(joined)
        if not spelled and (restored := restored_starts(pieces, text, anchor=anchor)) is not None:
            return restored
        return token_starts(pieces, len(joined) if anchor == "start" else len(text))
    first, last = split[0], split[-1] + 1
    skip = next(i for i in range(first + 1) if text.startswith("".join(pieces[i:first])))  # pieces before text
    block = len("".join(pieces[skip:first]))
    tail = "".join(pieces[last:])
    if not text.endswith(tail) or len(text) - len(tail) < block:
        last = len(pieces)  # the tail runs past the text (a stop string): it joins the block
    return token_starts(pieces[:first], block) + [block] * (last - first) + token_starts(pieces[last:], len(text))


def restored_starts(pieces: Sequence[str], text: str, *, anchor: Literal["start", "end"]) -> list[int] | None:
    """Start offsets for pieces that spell `text` but for spaces some of them lost, each lost run given to
    the token after it (decoded alone, a SentencePiece token may come without its leading space, as some
    vLLM versions report them); None where the pieces do not spell the text even so. Pieces past the
    `anchor`'s other end (an echo's `<bos>`, a draft's cut stop string) are placed beyond the text."""
    starts = []
    if anchor == "start":
        def fits(piece: str, position: int) -> bool:  # the piece is there, or the text ends inside it
            return text.startswith(piece, position) or piece.startswith(text[position:])

        position = 0
        for piece in pieces:
            starts.append(position)
            if position < len(text):
                while not fits(piece, position) and text.startswith(" ", position):
                    position += 1
                if not fits(piece, position):
                    return None
            position += len(piece)
        return starts
    end = len(text)
    for i in range(len(pieces) - 1, -1, -1):
        piece = pieces[i]
        if end <= 0 or not text.endswith(piece, 0, end):
            if end > 0:
                return None
            end -= len(piece)
        else:
            end -= len(piece)
            while end > 0 and text[end - 1] == " " and not (i and pieces[i - 1].endswith(" ")):
                end -= 1
        starts.append(end)
    return starts[::-1]


def token_ends(starts: Sequence[int], text_length: int) -> list[int]:
    """End offset of each token: the next greater start (tokens of a split character share theirs)."""
    ends, end = [], text_length
    for i in range(len(starts) - 1, -1, -1):
        ends.append(end)
        if i and starts[i - 1] < starts[i]:
            end = starts[i]
    return ends[::-1]


def word_boundaries(text: str) -> list[int]:
    """Offsets where a whitespace run begins after a non-space: the cut points between words.

    Both byte-level BPE and SentencePiece attach the space to the word after it, so every member's
    tokenizer usually starts a token here; the cut keeps the draft from ending in a partial word.
    """
    return [i for i in range(1, len(text)) if text[i].isspace() and not text[i - 1].isspace()]


def aligned_cut(text: str, member_starts: Iterable[Iterable[int]], *, final: bool) -> int:
    """Where to cut the candidate `text`, given every member's token start offsets inside it.

    The last word boundary every member agrees on wins (longest segment, fewest steps). A `final`
    draft (the member stopped) may be taken whole. Without any agreed word boundary, fall back to the
    last offset every member agrees on, and at worst to the whole text (a long word or number).
    """
    if final or not text:
        return len(text)
    common = set(range(1, len(text)))
    for starts in member_starts:
        common &= set(starts)
    words = [b for b in word_boundaries(text) if b in common]
    if words:
        return words[-1]
    return max(common) if common else len(text)
