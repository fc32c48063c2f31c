"""What a learned strategy reads from a request: the text of the user's question."""

from __future__ import annotations

from typing import Any

from service.types import GatewayRequest

# The learned models read at most the first 8,192 and the last 3,060 characters of a question (their token
# budgets, clipped at 16 characters a token): of a longer one, the ends are kept, so that the cache key and
# the text normalisation on the event loop cost the same for a megabyte as for 64 kB.
END_CHARS = 32_768


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "\n".join(str(part.get("text", "")) for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    return ""


def query_text(request: GatewayRequest) -> str | None:
    """The last user message (chat) or the prompt string (completions), its two ends where it is longer than
    2 × `END_CHARS`; None when there is no text."""
    text = _full_query_text(request)
    if text is not None and len(text) > 2 * END_CHARS:
        return text[:END_CHARS] + text[-END_CHARS:]
    return text


def _full_query_text(request: GatewayRequest) -> str | None:
    if request.endpoint == "chat":
        for message in reversed(request.body.get("messages", [])):
            if message.get("role") == "user":
                return content_text(message.get("content")) or None
        return None
    prompt = request.body.get("prompt")
    if isinstance(prompt, str):
        return prompt or None
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return prompt[0] or None
    return None
