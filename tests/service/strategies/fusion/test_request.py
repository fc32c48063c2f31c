"""What a request may ask of the fusion: a 400 naming each field it cannot honour, the rest carried out."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import InvalidRequest
from service.strategies.fusion.config import FusionConfig
from service.strategies.fusion.members import Member
from service.strategies.fusion.request import Plan, plan_of
from service.types import GatewayRequest

CONFIG = FusionConfig(members=["a", "b"])
MESSAGES = [{"role": "user", "content": "hi"}]


def plan(**body: Any) -> Plan:
    endpoint = "chat" if "messages" in body else "completions"
    return plan_of(GatewayRequest(endpoint, "fusion", {"model": "fusion", **body}, stream=False), CONFIG)


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": MESSAGES, "logprobs": True}, "logprobs"),
    ({"messages": MESSAGES, "top_logprobs": 5}, "top_logprobs"),
    ({"messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"messages": MESSAGES, "tool_choice": "required"}, "tool_choice"),
    ({"messages": MESSAGES, "response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": MESSAGES, "presence_penalty": 1.5}, "presence_penalty"),
    ({"messages": MESSAGES, "frequency_penalty": -0.5}, "frequency_penalty"),
    ({"prompt": "hi", "logprobs": 0}, "logprobs"),
    ({"prompt": "hi", "echo": True}, "echo"),
    ({"prompt": "hi", "best_of": 3}, "best_of"),
    ({"prompt": "hi", "suffix": "x"}, "suffix"),
    ({"prompt": "hi", "logit_bias": {"5": 100}}, "logit_bias"),
    ({"prompt": "hi", "stop": ["\n", ""]}, "stop"),
    ({"prompt": "hi", "stop": ""}, None),  # an empty `stop` string is no stop at all
    ({"prompt": ["hi", "ho"]}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "hi", "stop": "x" * 257}, "stop"),  # its tail is held back while the answer might begin it
    # vLLM's own fields, which the members would honour and fusion cannot carry
    ({"messages": MESSAGES, "guided_choice": ["yes", "no"]}, "guided_choice"),
    ({"messages": MESSAGES, "guided_json": {"type": "object"}}, "guided_json"),
    ({"messages": MESSAGES, "structured_outputs": {"regex": "a+"}}, "structured_outputs"),
    ({"messages": MESSAGES, "min_tokens": 5}, "min_tokens"),
    ({"messages": MESSAGES, "ignore_eos": True}, "ignore_eos"),
    ({"messages": MESSAGES, "stop_token_ids": [2]}, "stop_token_ids"),
    ({"messages": MESSAGES, "repetition_penalty": 1.2}, "repetition_penalty"),
    ({"messages": MESSAGES, "chat_template": "{{ messages }}"}, "chat_template"),
    ({"prompt": "hi", "include_stop_str_in_output": True}, "include_stop_str_in_output"),
    ({"prompt": "hi", "return_token_ids": True}, "return_token_ids"),
    ({"prompt": "hi", "truncate_prompt_tokens": 3}, "truncate_prompt_tokens"),
    ({"prompt": "hi", "add_special_tokens": False}, "add_special_tokens"),
    ({"messages": MESSAGES, "add_special_tokens": True}, "add_special_tokens"),
    ({"messages": MESSAGES, "skip_special_tokens": False}, "skip_special_tokens"),
    ({"prompt": "hi", "spaces_between_special_tokens": "false"}, "spaces_between_special_tokens"),
    ({"prompt": "hi", "skip_special_tokens": "maybe"}, "skip_special_tokens"),  # not a boolean at all
    ({"prompt": "hi", "stream_options": {"include_usage": True}}, "stream_options"),  # as vLLM: only with stream
    ({"prompt": "hi", "top_k": 2.5}, "top_k"),
    ({"prompt": "hi", "min_p": "0.1"}, "min_p"),
])
def test_what_fusion_cannot_honour_is_a_400_naming_the_field(body: dict[str, Any], param: str | None) -> None:
    if param is None:
        assert plan(**body).sampling.stop == []
        return
    with pytest.raises(InvalidRequest) as raised:
        plan(**body)
    assert raised.value.param == param


def test_neutral_values_and_a_one_string_prompt_list_are_accepted() -> None:
    chat = plan(messages=MESSAGES, logprobs=False, top_logprobs=0, tools=[], tool_choice="none",
                response_format={"type": "text"}, presence_penalty=0, frequency_penalty=0.0)
    assert chat.variant == "cool"
    assert plan(prompt=["Once upon"], best_of=1, echo=False, suffix="", logit_bias={}).prompt == "Once upon"
    assert plan(prompt="Once", logprobs=None).prompt == "Once"
    assert plan(prompt="Once", repetition_penalty=1.0, ignore_eos=False, min_tokens=0, stop_token_ids=[]).prompt
    assert plan(prompt="Once", add_special_tokens=True, skip_special_tokens=True, return_token_ids=False).prompt
    assert plan(messages=MESSAGES, add_special_tokens=False, spaces_between_special_tokens=True).variant
    assert plan(prompt="Once", skip_special_tokens=1, add_special_tokens="true", stream_options={}).prompt
    streamed = GatewayRequest("completions", "fusion", {"model": "fusion", "prompt": "Once",
                                                         "stream_options": {"include_usage": True}}, stream=True)
    assert plan_of(streamed, CONFIG).include_usage


def test_vllms_per_draft_sampling_options_reach_every_draft() -> None:
    sampling = plan(prompt="hi", temperature=0.7, top_p=0.9, seed=3, top_k=20, min_p=0.05, stop="\n").sampling
    assert sampling.body() == {"temperature": 0.7, "top_p": 0.9, "seed": 3, "top_k": 20, "min_p": 0.05,
                               "stop": ["\n"]}


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def post_json(self, backend: str, path: str, body: dict[str, Any], *, request_id: str = "") -> Any:
        self.bodies.append(body)
        return {"tokens": [1, 2]} if path == "/tokenize" else {"prompt": "<user>hi<assistant>Sure,"}


async def test_chat_rendering_options_reach_every_members_template() -> None:
    options = plan(messages=MESSAGES, continue_final_message=True, add_generation_prompt=False,
                   chat_template_kwargs={"enable_thinking": False}).render
    dispatcher = Recorder()
    prompt = await Member("a", dispatcher).render_chat(MESSAGES, options)  # type: ignore[arg-type]
    assert prompt.text == "<user>hi<assistant>Sure,"
    assert dispatcher.bodies[0] == {"messages": MESSAGES, "add_generation_prompt": False,
                                    "continue_final_message": True,
                                    "chat_template_kwargs": {"enable_thinking": False}}
