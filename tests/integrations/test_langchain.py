"""ComposerChatModel against the official langchain-tests suites, plus the trace, streaming by
step, stop, timeout, and the tool inside a small agent loop driven by a scripted chat model."""

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from composer import ComposerError
from composer.integrations.langchain import ComposerChatModel, composer_tool, default_composer

TWO_STEPS = "Reverse the words, then uppercase: hello big world"


class ComposerModelSpec:
    """What both standard suites are told about the model: one brick named directly, no tool
    calling or structured output (declared, not faked), usage metadata returned."""

    @property
    def chat_model_class(self):
        return ComposerChatModel

    @property
    def chat_model_params(self):
        return {"model": "uppercase"}  # nothing loads until the first call

    @property
    def has_tool_calling(self):
        return False

    @property
    def has_structured_output(self):
        return False

    @property
    def returns_usage_metadata(self):
        return True


class TestComposerChatModelUnit(ComposerModelSpec, ChatModelUnitTests):
    pass


@pytest.mark.slow
class TestComposerChatModelIntegration(ComposerModelSpec, ChatModelIntegrationTests):
    """The suite's messages ("Hello", "how are you") carry no payload, so they run on one brick
    directly (`model="uppercase"`), as an OpenAI client names a LoRA adapter on vLLM."""

    @property
    def supports_model_override(self):
        return True

    @property
    def model_override_value(self):
        return "reverse"


@pytest.fixture(scope="module")
def chat():
    return ComposerChatModel(composer=default_composer())


def test_answer_carries_trace_and_usage(chat):
    msg = chat.invoke([SystemMessage("ignored"), HumanMessage(TWO_STEPS)])
    assert msg.content == "WORLD BIG HELLO"
    meta = msg.response_metadata
    assert meta["model_name"] == "composer" and meta["plan"]["payload"] == "hello big world"
    assert [s["used"] for s in meta["steps"]] == [["reverse_words"], ["uppercase"]]
    assert meta["steps"][0]["bricks"][0] == {"id": "reverse_words", "score": pytest.approx(1.0, abs=0.05)}
    usage = msg.usage_metadata
    assert usage["input_tokens"] == sum(s["prompt_tokens"] for s in meta["steps"]) > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_stream_yields_each_step_then_the_answer(chat):
    chunks = list(chat.stream(TWO_STEPS))
    assert [c.content for c in chunks] == ["", "", "WORLD BIG HELLO"]
    assert chunks[0].response_metadata["steps"][0]["output"] == "world big hello"
    full = chunks[0] + chunks[1] + chunks[2]
    assert full.content == "WORLD BIG HELLO" and len(full.response_metadata["steps"]) == 2
    assert full.usage_metadata == chat.invoke(TWO_STEPS).usage_metadata


def test_stop_cuts_the_answer_and_brick_model_runs_directly(chat):
    assert chat.invoke("Uppercase: big cat", stop=[" CAT"]).content == "BIG"
    direct = ComposerChatModel(composer=chat.composer, model="reverse").invoke("hello")
    assert direct.content == "olleh" and direct.response_metadata["plan"]["planner"] == "direct"


def test_user_errors_raise_clearly(chat):
    with pytest.raises(ComposerError, match="no input found"):
        chat.invoke("Uppercase")
    with pytest.raises(ComposerError, match="no human message"):
        chat.invoke([SystemMessage("Uppercase: big cat")])
    with pytest.raises(ComposerError, match="nosuchbrick"):
        ComposerChatModel(composer=chat.composer, model="nosuchbrick").invoke("hello")


def test_timeout_raises(chat):
    slow = ComposerChatModel(composer=chat.composer, timeout=0.001)
    with pytest.raises(TimeoutError, match="0.001 s"):
        slow.invoke(TWO_STEPS)


def test_tool_in_an_agent_loop(chat):
    """A scripted model calls the tool, reads its answer, and replies with it."""
    tool = composer_tool(chat.composer)
    assert set(tool.args) == {"instruction", "input", "mode"} and "uppercase" in tool.description
    agent = GenericFakeChatModel(messages=iter([
        AIMessage("", tool_calls=[{"name": "composer", "id": "call-1",
                                   "args": {"instruction": "Give the plural", "input": "goose"}}]),
        AIMessage("", tool_calls=[{"name": "composer", "id": "call-2", "args": {"instruction": "Uppercase"}}]),
        AIMessage("The plural of goose is geese."),
    ]))
    messages = [HumanMessage("What is the plural of goose?")]
    tools = {tool.name: tool}
    while True:
        reply = agent.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            messages.append(tools[call["name"]].invoke({**call, "type": "tool_call"}))
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results[0].content == "geese" and results[0].artifact["steps"][0]["used"] == ["plural"]
    assert results[1].status == "error" and "no input found" in results[1].content  # the agent sees the error
    assert messages[-1].content == "The plural of goose is geese."
