"""The text of each token from the vocabulary strings `/tokenize` returns (`return_token_strs`).

vLLM reports a tokenizer's own vocabulary entries, which spell text in one of two conventions:
byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM: every byte mapped to a printable character, `Ġ` for a
space) or SentencePiece (Llama 2, Gemma, Mistral: `▁` for a space, `<0x0A>` for a raw byte). Both
readings are tried and a reading counts only when the pieces spell exactly the text they cover, so a
tokenizer that follows neither, or a character split across tokens, gives None (the caller then scores
another way) rather than wrong offsets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in for each byte, inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    stand_ins = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            stand_ins.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, stand_ins, strict=True)}


def _byte_level(token: str) -> str | None:
    decoder = _byte_decoder()
    try:
        return bytes(decoder[c] for c in token).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def _sentencepiece(token: str) -> str | None:
    text = token.replace("▁", " ")
    if "<0x" not in text:
        return text
    try:
        return _BYTE_TOKEN.sub(lambda m: bytes([int(m.group(1), 16)]).decode("utf-8"), text)
    except UnicodeDecodeError:  # one byte of a multi-byte character
        return None


def token_texts(token_strs: Sequence[str], text: str) -> list[str] | None:
    """The text of each token, when the tokens spell exactly the end of `text`; else None."""
    for reading in (_byte_level, _sentencepiece):
        pieces = [reading(t) for t in token_strs]
        if all(p is not None for p in pieces):
            spelled = "".join(pieces)  # type: ignore[arg-type]
            if spelled and text.endswith(spelled):
                return pieces  # type: ignore[return-value]
    return None
