"""Cache keys: a hash of exactly what a decision depends on."""

from __future__ import annotations

import hashlib
import unicodedata


def normalise(text: str) -> str:
    """Unicode NFC and collapsed whitespace: requests that differ only in spacing share a decision."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def decision_key(strategy: str, config_version: str, artifact_version: str, question: str) -> str:
    """The key of a decision on `question`, already `normalise`d (the model reads that text too)."""
    digest = hashlib.blake2b(question.encode(), digest_size=16).hexdigest()
    return f"switchyard:decision:{strategy}:{config_version}:{artifact_version}:{digest}"
