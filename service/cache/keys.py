"""Cache keys: a hash of exactly what a decision depends on."""

from __future__ import annotations

import hashlib
import unicodedata


def normalise(text: str) -> str:
    """Unicode NFC and collapsed whitespace: requests that differ only in spacing share a decision."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def decision_key(strategy: str, config_version: str, artifact_version: str, content: str) -> str:
    digest = hashlib.blake2b(normalise(content).encode(), digest_size=16).hexdigest()
    return f"switchyard:decision:{strategy}:{config_version}:{artifact_version}:{digest}"
