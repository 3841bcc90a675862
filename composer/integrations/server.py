"""OpenAI-compatible HTTP server: `composer serve`, or `create_app(...)` in your own ASGI stack.

As vLLM and LoRAX serve many LoRA adapters behind one endpoint, the request's `model` picks
what runs: "composer" plans the last user message and retrieves bricks; a brick id runs
that brick on the whole message. `GET /v1/models` lists both (bricks with `parent` = the
base). Concurrent requests go through one `Batcher`: gathered for a few milliseconds and
run as one engine batch, each row with its own bricks; the queue is bounded and a full queue
answers 503 at once. Errors use OpenAI's body `{"error": {"message", "type", "param",
"code"}}`: 400 bad input, 401 missing key (when `COMPOSER_API_KEY` is set), 404 unknown
model, 413 too large, 422 invalid request, 503 overloaded or timed out.

Every answer carries the composer's trace in an extra field `composer` (the whole Result);
a stream sends one chunk per finished step (its trace in `composer_step`, no text: an
intermediate output is not the answer), then the answer, the finish chunk, the usage chunk
when `stream_options.include_usage` is set, and `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from composer.batching import Batcher, Overloaded, RequestFailed
from composer.composer import Composer, Result, StepResult
from composer.errors import ComposerError

COMPOSE = "composer"
MAX_BODY_BYTES = 64_000


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The OpenAI chat-completions fields the composer honours; `mode` is its own extension."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    mode: Literal["auto", "single", "mixture", "merge", "arrow", "sparse", "base"] = "auto"

    def sampling(self) -> dict:
        options = {"max_new_tokens": self.max_completion_tokens or self.max_tokens, "temperature": self.temperature,
                   "top_p": self.top_p, "seed": self.seed}
        return {k: v for k, v in options.items() if v is not None}

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": type, "param": param, "code": code}}


def create_app(source=None, *, planner=None, api_key: str | None = None, window_ms: float = 10, max_batch: int = 32,
               max_queue: int = 256, timeout_s: float = 120, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI app over `source`: a Composer, a Workspace, or None (the embedded default).

    planner: a planner object or a spec ("heuristic", "llm:<module>:<attr>") the composer uses;
    api_key: required bearer key (default: the COMPOSER_API_KEY environment variable, if set);
    window_ms / max_batch / max_queue: the Batcher's; timeout_s: per request, then 503."""
    composer = _composer(source)
    if isinstance(planner, str):
        from composer.llm_planner import LLMPlanner, planner_from_spec

        planner = planner_from_spec(planner)
        if isinstance(planner, LLMPlanner):  # falls back on the composer's own heuristic planner
            planner.fallback = composer.planner
    if planner is not None:
        composer.planner = planner
    api_key = api_key if api_key is not None else os.environ.get("COMPOSER_API_KEY") or None
    batcher = Batcher(composer, window_ms=window_ms, max_batch=max_batch, max_queue=max_queue)
    base = Path(composer.workspace.base_path).name if composer.workspace is not None else "base"
    started = int(time.time())
    app = FastAPI(title="Brick Composer", summary="OpenAI-compatible chat completions over LoRA bricks")
    app.state.composer, app.state.batcher = composer, batcher

    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body, status_code=err.status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        """Bearer key first, then the body size (from the header; the body is checked again when read)."""
        if api_key is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), api_key):
                return JSONResponse(APIError(401, "missing or wrong API key: send Authorization: Bearer <key>",
                                             code="invalid_api_key").body, status_code=401)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            return JSONResponse(_too_large(int(length), max_body_bytes).body, status_code=413)
        return await call_next(request)

    def models() -> list[dict]:
        entries = [{"id": COMPOSE, "object": "model", "created": started, "owned_by": "composer", "root": COMPOSE,
                    "parent": None}]
        for card in composer.library.cards():
            entries.append({"id": card.id, "object": "model", "created": started, "owned_by": "composer",
                            "root": card.id, "parent": base, "title": card.title, "kind": card.kind})
        return entries

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": models()}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict:
        for entry in models():
            if entry["id"] == model_id:
                return entry
        raise _unknown_model(model_id)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "bricks": len(composer.library.cards())}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        raw = await request.body()
        if len(raw) > max_body_bytes:
            raise _too_large(len(raw), max_body_bytes)
        req = _parse(raw)
        if req.n != 1:
            raise APIError(400, f"n must be 1, got {req.n}: the composer returns one answer per request", param="n")
        if req.model != COMPOSE and req.model not in {c.id for c in composer.library.cards()}:
            raise _unknown_model(req.model)
        text = _last_user_text(req.messages)
        if len(text) > composer.max_input_chars:
            raise APIError(413, f"the last user message is {len(text)} characters; the limit is "
                                f"{composer.max_input_chars}", param="messages", code="message_too_long")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()  # StepResults as steps finish, then the finished task
        on_step = lambda _, step: loop.call_soon_threadsafe(events.put_nowait, step)  # noqa: E731
        try:
            future = batcher.submit(text, mode=req.mode, on_step=on_step if req.stream else None,
                                    brick=None if req.model == COMPOSE else req.model, **req.sampling())
        except Overloaded as err:
            raise APIError(503, str(err), type="server_error", code="overloaded") from None
        task = asyncio.ensure_future(_wait(future, timeout_s))
        reply = _Reply(req, composer)
        if not req.stream:
            return reply.completion(await task)
        task.add_done_callback(events.put_nowait)
        first = await events.get()
        if first is task:
            first.result()  # a plan error (no payload...) comes before any step: answered with its status
        return StreamingResponse(reply.stream(first, events), media_type="text/event-stream")

    return app


class _Reply:
    """The OpenAI-shaped answer to one request: a completion, or its stream of chunks."""

    def __init__(self, req: ChatRequest, composer: Composer):
        self.req, self.composer = req, composer
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def answer(self, result: Result) -> str:
        text = result.output
        for stop in self.req.stops():
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text

    def finish_reason(self, result: Result) -> str:
        limit = self.req.sampling().get("max_new_tokens") or self.composer.engine.max_new_tokens
        return "length" if result.steps and result.steps[-1].output_tokens > limit else "stop"

    @staticmethod
    def usage(result: Result) -> dict:
        prompt = sum(s.prompt_tokens for s in result.steps)
        completion = sum(s.output_tokens for s in result.steps)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def completion(self, result: Result) -> dict:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.answer(result)},
                             "finish_reason": self.finish_reason(result), "logprobs": None}],
                "usage": self.usage(result), "composer": result.model_dump()}

    def chunk(self, delta: dict | None, finish: str | None = None, **extra) -> str:
        """One SSE event; `delta=None` sends no choice (the usage chunk)."""
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.req.model,
                "choices": choices, **extra}
        return f"data: {json.dumps(body)}\n\n"

    async def stream(self, first, events: asyncio.Queue):
        yield self.chunk({"role": "assistant", "content": ""})
        event = first
        while True:
            if isinstance(event, asyncio.Future):
                try:
                    event = event.result()
                except APIError as err:  # after the headers: the error travels as an event
                    yield f"data: {json.dumps(err.body)}\n\n"
                    break
            if isinstance(event, StepResult):
                yield self.chunk({}, composer_step=event.model_dump())
            else:
                yield self.chunk({"content": self.answer(event)})
                yield self.chunk({}, self.finish_reason(event), composer=event.model_dump())
                if self.req.stream_options is not None and self.req.stream_options.include_usage:
                    yield self.chunk(None, usage=self.usage(event))
                break
            event = await events.get()
        yield "data: [DONE]\n\n"


async def _wait(future, timeout_s: float) -> Result:
    """The request's Result, or the APIError to answer with."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except (asyncio.TimeoutError, TimeoutError):
        future.cancel()  # dropped if it has not started yet
        raise APIError(503, f"the request took over {timeout_s:g} s; the server is busy, try again",
                       type="server_error", code="timeout") from None
    except RequestFailed as err:
        raise APIError(400, str(err), code=err.kind) from None
    except ComposerError as err:
        raise APIError(400, str(err), code=type(err).__name__) from None


def _composer(source) -> Composer:
    if source is None:
        return Composer.from_default()
    if isinstance(source, Composer):
        return source
    if hasattr(source, "composer"):  # a Workspace
        return source.composer()
    raise ComposerError(f"create_app takes a Composer, a Workspace or None, got {type(source).__name__}")


def _parse(raw: bytes) -> ChatRequest:
    try:
        return ChatRequest.model_validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "json_invalid":
            raise APIError(400, f"the body is not valid JSON: {first['msg']}") from None
        where = ".".join(map(str, first["loc"]))
        raise APIError(422, f"{where}: {first['msg']}" + (f" ({len(err.errors())} errors)" if len(err.errors()) > 1
                                                          else ""), param=where, code="invalid_value") from None


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            if isinstance(message.content, str):
                return message.content
            parts = message.content or []
            if any(p.type != "text" for p in parts):
                raise APIError(400, "only text content is supported", param="messages")
            return "".join(p.text or "" for p in parts)
    raise APIError(400, "no user message: the last user message is the instruction", param="messages")


def _unknown_model(model: str) -> APIError:
    return APIError(404, f"unknown model {model!r}: use 'composer' or a brick id from GET /v1/models",
                    param="model", code="model_not_found")


def _too_large(size: int, limit: int) -> APIError:
    return APIError(413, f"the request body is {size} bytes; the limit is {limit}", code="request_too_large")


def serve(source=None, *, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Build the app and run it with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(source, **options), host=host, port=port, log_level="info")
