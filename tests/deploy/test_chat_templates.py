"""The shipped chat templates: DeepSeek-R1's takes the gateway's short-mode prefill, where R1's own drops it;
Gemma's (the cluster's and the local backends') writes a system message as the first user turn's preamble."""

from __future__ import annotations

import pytest

from router_models.encoder import load_tokenizer
from service.strategies.thinking import ThinkingConfig, apply_mode
from tests.harness import REPO

R1_TEMPLATE = (REPO / "deploy/chat-templates/deepseek-r1.jinja").read_text()
GEMMA = (REPO / "deploy/k8s/base/vllm/gemma3-chat-template.jinja").read_text()
# How R1's own template writes assistant turns: everything up to </think> dropped, the turn closed.
DROPS_THINKING = ("{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
                  "{% elif m['role'] == 'assistant' %}{% set c = m['content'] %}{% if '</think>' in c %}"
                  "{% set c = c.split('</think>')[-1] %}{% endif %}<｜Assistant｜>{{ c }}<｜end▁of▁sentence｜>"
                  "{% endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜>{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>\nA greeting.\n</think>\n\nHello!"},
            {"role": "user", "content": "What is 2 + 2?"}]


def render(messages: list[dict[str, str]], template: str, short: bool) -> str:
    """The prompt as vLLM has transformers render it for a short (prefilled) or a long request."""
    return str(load_tokenizer().apply_chat_template(messages, chat_template=template, tokenize=False,
                                                    continue_final_message=short, add_generation_prompt=not short))


def test_short_mode_continues_the_prefilled_empty_thinking_block() -> None:
    short = apply_mode({"messages": MESSAGES}, ThinkingConfig(switcher="unused", family="deepseek-r1"), "short")
    assert render(short["messages"], R1_TEMPLATE, short=True) == (
        "Be brief.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜>"
        "<｜User｜>What is 2 + 2?<｜Assistant｜><think>\n\n</think>\n\n")


def test_long_mode_opens_the_thinking_block() -> None:
    assert render(MESSAGES, R1_TEMPLATE, short=False).endswith("<｜User｜>What is 2 + 2?<｜Assistant｜><think>\n")


def test_a_template_that_drops_thinking_from_the_last_turn_cannot_take_the_prefill() -> None:
    short = apply_mode({"messages": MESSAGES}, ThinkingConfig(switcher="unused", family="deepseek-r1"), "short")
    with pytest.raises(ValueError, match="final message"):
        render(short["messages"], DROPS_THINKING, short=True)


@pytest.mark.parametrize("extra", [
    [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                            "function": {"name": "weather", "arguments": "{}"}}]},
     {"role": "tool", "tool_call_id": "c", "content": "18C, sunny"}],
])
def test_tool_calls_and_results_are_refused_not_dropped(extra: list[dict[str, object]]) -> None:
    with pytest.raises(Exception, match="does not render tool"):
        render([*MESSAGES, *extra], R1_TEMPLATE, short=False)  # type: ignore[list-item]
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    with pytest.raises(Exception, match="does not render tools"):
        load_tokenizer().apply_chat_template(MESSAGES, chat_template=R1_TEMPLATE, tools=tools, tokenize=False,
                                             add_generation_prompt=True)


def test_gemma_writes_the_system_message_into_the_first_user_turn() -> None:
    messages = [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": None}, {"role": "user", "content": "What is 2 + 2?"}]
    assert render(messages, GEMMA, short=False) == (  # type: ignore[arg-type]
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n<start_of_turn>model\n")


def test_gemma_keeps_a_lone_or_a_later_system_message_as_a_user_turn() -> None:
    assert render([{"role": "system", "content": "Be brief."}], GEMMA, short=False) == (
        "<start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>model\n")
    later = [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Now in French."}]
    assert render(later, GEMMA, short=False) == (
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>user\nNow in French.<end_of_turn>\n"
        "<start_of_turn>model\n")


def test_gemma_continues_a_prefilled_answer_as_sent() -> None:
    short = apply_mode({"messages": MESSAGES[:2]}, ThinkingConfig(switcher="unused", family="deepseek-r1"), "short")
    assert render(short["messages"], GEMMA, short=True) == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n<think>\n\n</think>\n\n")


def test_gemma_refuses_tool_calls_rather_than_dropping_them() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]}
    with pytest.raises(Exception, match="does not render tool"):
        render([*MESSAGES, call], GEMMA, short=False)  # type: ignore[list-item]


def test_gemma_prefills_an_empty_thinking_block_when_thinking_is_off() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    turn = "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    for thinking, prompt in ((False, turn + "<think>\n\n</think>\n\n"), (True, turn), (None, turn)):
        kwargs = {} if thinking is None else {"enable_thinking": thinking}
        assert load_tokenizer().apply_chat_template(messages, chat_template=GEMMA, tokenize=False,
                                                    add_generation_prompt=True, **kwargs) == prompt, thinking
