"""What a learned strategy reads from a request: the text of the user's question."""

from __future__ import annotations

from typing import Any

from service.types import GatewayRequest


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "\n".join(str(part.get("text", "")) for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    return ""


def query_text(request: GatewayRequest) -> str | None:
    """The last user message (chat) or the prompt string (completions); None when there is no text."""
    if request.endpoint == "chat":
        for message in reversed(request.body.get("messages", [])):
            if message.get("role") == "user":
                return _content_text(message.get("content")) or None
        return None
    prompt = request.body.get("prompt")
    if isinstance(prompt, str):
        return prompt or None
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return prompt[0] or None
    return None
