"""LangChain front end: the composer as a chat model, and as a tool an agent can call.

`ComposerChatModel` reads the last human message as the instruction (payload as in the CLI:
after a colon, after `input=`, or in quotes) and answers with an `AIMessage` whose
`response_metadata` carries the trace (plan, each step's bricks, scores, mode, note) and
whose `usage_metadata` counts prompt and generated tokens over all steps. `model` picks what
runs, as on the HTTP server: "composer" plans and retrieves; a brick id runs that brick on
the whole message. Streaming yields one chunk per finished step (its trace in
`response_metadata["steps"]`, no text: an intermediate output is not the answer), then the
answer. Tool calling and structured output are not supported (the bricks are small
single-skill models), and the class says so instead of faking them.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from composer.composer import Composer, Result, StepResult
from composer.errors import ComposerError

COMPOSE = "composer"  # the model name that plans and retrieves; any other name is a brick id
_default: dict[str, Composer] = {}
_default_lock = threading.Lock()


def default_composer() -> Composer:
    """The embedded default, loaded once per process and shared by every model that names none."""
    with _default_lock:
        if "c" not in _default:
            _default["c"] = Composer.from_default()
        return _default["c"]


class ComposerChatModel(BaseChatModel):
    """A LangChain chat model over a `Composer` (the embedded default when none is given)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    composer: Any = Field(default=None, exclude=True, description="a Composer; None = the embedded default")
    model: str = Field(default=COMPOSE, alias="model_name",
                       description="'composer' plans and retrieves; a brick id runs that brick on the whole message")
    mode: Literal["auto", "single", "mixture", "merge", "arrow", "sparse", "base"] = "auto"
    temperature: float = 0.0
    max_tokens: int | None = Field(default=None, description="new tokens per step (None: the engine's default)")
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = Field(default=None, description="the answer is cut before the first of these")
    timeout: float | None = Field(default=None, description="seconds to wait for the answer, then TimeoutError")
    max_retries: int = Field(default=0, description="reruns after a timeout (user errors are never retried)")

    @property
    def _llm_type(self) -> str:
        return "composer"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "mode": self.mode, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "top_p": self.top_p, "seed": self.seed}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="composer", ls_model_name=kwargs.get("model", self.model),
                                 ls_model_type="chat", ls_temperature=kwargs.get("temperature", self.temperature))
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if stop := stop or self.stop:
            params["ls_stop"] = stop
        return params

    # -- running -------------------------------------------------------------------------------
    def _events(self, messages: list[BaseMessage], **kwargs: Any) -> Iterator[StepResult | Result]:
        """Each StepResult as its step finishes, then the Result; `timeout` bounds the wait."""
        instruction = _last_human_text(messages)
        model = kwargs.get("model", self.model)
        sampling = {"max_new_tokens": kwargs.get("max_tokens", self.max_tokens),
                    "temperature": kwargs.get("temperature", self.temperature),
                    "top_p": kwargs.get("top_p", self.top_p), "seed": kwargs.get("seed", self.seed)}
        composer = self.composer if self.composer is not None else default_composer()
        for attempt in range(self.max_retries + 1):
            events: queue.Queue = queue.Queue()

            def work() -> None:
                on_step = lambda _, step: events.put(step)  # noqa: E731
                try:
                    if model == COMPOSE:
                        events.put(composer.run(instruction, mode=self.mode, on_step=on_step, **sampling))
                    else:
                        events.put(composer.run_bricks([model], [instruction], on_step=on_step, **sampling)[0])
                except BaseException as err:  # handed to the caller's thread
                    events.put(err)

            threading.Thread(target=work, daemon=True, name="composer-chat").start()
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            try:
                while True:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    event = events.get(timeout=left)
                    if isinstance(event, BaseException):
                        raise event
                    yield event
                    if isinstance(event, Result):
                        return
            except queue.Empty:
                if attempt == self.max_retries:
                    raise TimeoutError(f"the composer gave no answer within {self.timeout} s") from None

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        result = [e for e in self._events(messages, **kwargs) if isinstance(e, Result)][0]
        model = kwargs.get("model", self.model)
        message = AIMessage(content=_cut(result.output, stop or self.stop),
                            response_metadata={**_trace(result, model), "steps": _steps(result.steps)},
                            usage_metadata=_usage(result))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        model = kwargs.get("model", self.model)
        for event in self._events(messages, **kwargs):
            if isinstance(event, StepResult):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata={
                    "steps": _steps([event])}))
            else:
                chunk = ChatGenerationChunk(message=AIMessageChunk(
                    content=_cut(event.output, stop or self.stop), response_metadata=_trace(event, model),
                    usage_metadata=_usage(event), chunk_position="last"))
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


def _last_human_text(messages: list[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text if isinstance(message.text, str) else message.text()
    raise ComposerError("no human message: the last human message is the instruction")


def _cut(text: str, stop: list[str] | None) -> str:
    for s in stop or []:
        if s and s in text:
            text = text[: text.index(s)]
    return text


def _steps(steps: list[StepResult]) -> list[dict]:
    return [s.model_dump() for s in steps]


def _trace(result: Result, model: str) -> dict:
    return {"model_name": model, "plan": result.plan.model_dump(), "finish_reason": "stop"}


def _usage(result: Result) -> UsageMetadata:
    prompt = sum(s.prompt_tokens for s in result.steps)
    output = sum(s.output_tokens for s in result.steps)
    return UsageMetadata(input_tokens=prompt, output_tokens=output, total_tokens=prompt + output)


# -- tool ----------------------------------------------------------------------------------------
class ComposerToolArgs(BaseModel):
    instruction: str = Field(description="what to do, with the text to work on after a colon, e.g. "
                                         "'Reverse the words, then uppercase: hello big world'")
    input: str | None = Field(None, description="the text to work on, if not in the instruction")
    mode: Literal["auto", "single", "mixture", "merge", "arrow", "sparse", "base"] = Field(
        "auto", description="how each step combines bricks; auto decides from retrieval scores")


def composer_tool(composer: Composer | None = None, *, name: str = "composer") -> StructuredTool:
    """A StructuredTool that runs `composer` (default: the embedded default): its content is the
    answer, its artifact the whole Result as a dict; a user error comes back as the tool's text."""

    def run(instruction: str, input: str | None = None, mode: str = "auto") -> tuple[str, dict]:
        c = composer if composer is not None else default_composer()
        try:
            result = c.run(instruction, input=input, mode=mode)
        except ComposerError as err:
            raise ToolException(f"error: {err}") from None
        return result.output, result.model_dump()

    cards = ""
    if composer is not None and composer.workspace is not None:
        cards = " Skills: " + ", ".join(e.id for e in composer.workspace.list() if e.ok) + "."
    return StructuredTool.from_function(
        func=run, name=name, args_schema=ComposerToolArgs, response_format="content_and_artifact",
        handle_tool_error=True,
        description="Run text skills (string edits, small lookups) on a short ASCII text; steps can be chained "
                    "with 'then'." + cards)
