"""HTTP-side plumbing shared by the routes that call models: disconnects and server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from modelyard.errors import ModelyardError
from modelyard.worker import protocol as wire
from modelyard_server.auth import request_key, require_model
from modelyard_server.errors import error_body
from modelyard_server.metrics import MODEL_KEY

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the client's disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, call: Awaitable[T]) -> T:
    """Await `call`; if the client goes away first, cancel it (which cancels it in the worker)."""
    call_task = asyncio.ensure_future(call)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((call_task, watch), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        call_task.cancel()  # the handler itself was cancelled: so is the call
        raise
    finally:
        watch.cancel()
    if not call_task.done():
        call_task.cancel()
        raise asyncio.CancelledError("the client disconnected")
    return call_task.result()


async def first_then_rest(chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    """Wait for the first item before answering, so an error that comes first (bad arguments, a
    dead worker) is a proper HTTP error rather than an in-band event after a 200."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _empty()

    async def rest() -> AsyncIterator[T]:
        yield first
        async for chunk in chunks:
            yield chunk

    return rest()


async def _empty() -> AsyncIterator[T]:
    return
    yield


async def sse(batches: AsyncIterator[list[bytes]]) -> AsyncIterator[bytes]:
    """Server-sent events: `data: <json>` per chunk, one write per batch, `data: [DONE]` at the
    end, errors in-band."""
    try:
        async for batch in batches:
            yield b"".join(b"data: " + chunk + b"\n\n" for chunk in batch)
    except ModelyardError as exc:
        body = error_body(exc.status, exc.message, exc.type)
        yield b"data: " + json.dumps({"error": body["error"]}).encode() + b"\n\n"
        return
    yield b"data: [DONE]\n\n"


async def raw_bytes(items: AsyncIterator[list[Any]]) -> AsyncIterator[bytes]:
    """A stream of bytes (speech as it is made): each item is bytes, one write per batch. An error
    after the answer has begun can only end it early."""
    try:
        async for batch in items:
            yield b"".join(bytes(item) for item in batch)
    except ModelyardError:
        return


async def model_response(request: Request, uid: str, method: str, args: list[Any], kwargs: dict[str, Any], *,
                         model_type: str | None = None, form: str = "json", media_type: str | None = None,
                         shape: Callable[[Any], bytes] | None = None,
                         shape_events: Callable[[AsyncIterator[list[Any]]], AsyncIterator[list[bytes]]] | None = None,
                         ) -> Response:
    """The one way a route answers with a model's result: `form` "json" (the whole result, as the
    worker encoded it, or its raw value through `shape`), "events" (server-sent events: one per item
    as the worker encoded it, or the raw items through `shape_events`, which turns each batch into
    encoded events) or "bytes" (a raw byte stream of `media_type`). The model's access, type and
    ability are checked first, and an error before the first item is a proper HTTP error."""
    from modelyard_server.state import server_state

    supervisor = server_state(request).supervisor
    require_model(request, uid, supervisor.model_name(uid))
    key = request_key(request)
    request.scope[MODEL_KEY] = uid  # for the metrics' model label
    if form == "events":
        mode = wire.MODE_STREAM_JSON if shape_events is None else wire.MODE_STREAM
        items = await first_then_rest(supervisor.stream(uid, method, args, kwargs, model_type=model_type, mode=mode,
                                                        key=key))
        return StreamingResponse(sse(items if shape_events is None else shape_events(items)),
                                 media_type="text/event-stream")
    if form == "bytes":
        items = await first_then_rest(supervisor.stream(uid, method, args, kwargs, model_type=model_type,
                                                        mode=wire.MODE_STREAM, key=key))
        return StreamingResponse(raw_bytes(items), media_type=media_type or "application/octet-stream")
    if form != "json":
        raise ValueError(f"unknown answer form {form!r}")
    mode = wire.MODE_JSON if shape is None else wire.MODE_RAW
    result = await cancel_on_disconnect(request, supervisor.call(uid, method, args, kwargs, model_type=model_type,
                                                                 mode=mode, key=key))
    return Response(result if shape is None else shape(result), media_type=media_type or "application/json")
