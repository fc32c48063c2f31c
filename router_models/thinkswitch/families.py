"""How a reasoning model of each family is told to think long or answer short: one rewrite of a chat body.

The gateway sends its requests through it, and the collect tool gathers a switcher's training data through it,
so a switcher is trained on answers to exactly the requests it will decide.
"""

from __future__ import annotations

from typing import Any, Literal

Mode = Literal["short", "long"]
FAMILIES = ("qwen3", "deepseek-r1", "reasoning-effort")
# DeepSeek-R1's thinking, closed before it starts: prefilled as the assistant turn, it makes the answer short.
R1_EMPTY_THINKING = "<think>\n\n</think>\n\n"
# Where vLLM's reasoning parser puts the thinking of a reply message: its name, and its name before 0.11.
REASONING_FIELDS = ("reasoning", "reasoning_content")


def apply_family(body: dict[str, Any], family: str, mode: Mode) -> dict[str, Any]:
    """A copy of chat `body` asking a model of `family` for `mode` (the caller's dict is never changed):
    - qwen3: `chat_template_kwargs.enable_thinking` (the body's other template arguments kept);
    - reasoning-effort: `reasoning_effort` high or low;
    - deepseek-r1: short prefills `R1_EMPTY_THINKING` and continues it; long is the model's own way."""
    body = dict(body)
    if family == "qwen3":
        body["chat_template_kwargs"] = {**(body.get("chat_template_kwargs") or {}), "enable_thinking": mode == "long"}
    elif family == "reasoning-effort":
        body["reasoning_effort"] = "high" if mode == "long" else "low"
    elif family == "deepseek-r1":
        if mode == "short":
            body["messages"] = [*body["messages"], {"role": "assistant", "content": R1_EMPTY_THINKING}]
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
    else:
        raise ValueError(f"unknown reasoning family {family!r}; one of {', '.join(FAMILIES)}")
    return body
