"""The server-worker wire format: msgpack messages over a stream socket.

msgpack is self-delimiting, so a streaming unpacker is the framing. Every message is a list whose
first item is its kind.

server -> worker   [LAUNCH, launch]                      first message: what to load
                                                         (a spare's also holds its `environ`)
                   [CALL, rid, method, args, kwargs, mode]
                   [CANCEL, rid]
                   [CREDIT, rid, n]                      n more chunks of a stream may come
                   [PING, token]
worker -> server   [PROGRESS, stage, fraction, message]  while loading
                   [READY, info]  or  [FAILED, type, message]
                   [RESULT, rid, value]                  one value (a generator's items, collected)
                   [CHUNK, rid, value] ... [END, rid]    a generator's items, in a stream mode
                   [ERROR, rid, type, status, message]
                   [PONG, token, {in_flight, stalled_seconds}]

A stream may run STREAM_CREDIT chunks ahead of what the server has passed on to its client; the
server grants more as it passes them on, so a slow client holds the model back instead of filling
the server's memory. A stream shorter than STREAM_CREDIT never needs a grant.

A call's mode says how values travel: MODE_JSON / MODE_STREAM_JSON encode each value as JSON bytes
in the worker (the server passes them through untouched); MODE_RAW / MODE_STREAM send msgpack values,
with arrays (numpy's, torch's, `modelyard.arrays.Array`) as `Array`s and dataclasses as dicts
(`modelyard.arrays`): the typed results of the model-type bases travel this way.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import msgpack

from modelyard.arrays import ext_hook, wire_default

LAUNCH, PROGRESS, READY, FAILED = "launch", "progress", "ready", "failed"
CALL, CANCEL, PING, PONG, CREDIT = "call", "cancel", "ping", "pong", "credit"
RESULT, CHUNK, END, ERROR = "result", "chunk", "end", "error"
MODE_JSON, MODE_RAW, MODE_STREAM_JSON, MODE_STREAM = "json", "raw", "stream_json", "stream"

STREAM_CREDIT = 256
# Past this many bytes waiting in the socket buffer, a writer waits for the peer to read.
HIGH_WATER = 1 << 20


def pack(message: list[Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True, default=wire_default)


async def messages(reader: asyncio.StreamReader) -> AsyncIterator[list[Any]]:
    """Every message from `reader` until the peer closes the socket."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 31, ext_hook=ext_hook)
    while True:
        data = await reader.read(1 << 16)
        if not data:
            return
        unpacker.feed(data)
        for message in unpacker:
            yield message


async def send(writer: asyncio.StreamWriter, message: list[Any]) -> None:
    await send_bytes(writer, pack(message))


async def send_bytes(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    if writer.transport.get_write_buffer_size() > HIGH_WATER:
        await writer.drain()


class Sender:
    """Thread-safe writes of whole messages to the link, from the event loop or any other thread.

    A streaming model thread sends its items itself, so an item costs no hop through the event
    loop. Writes block while the peer's socket buffer is full, which is the backpressure a stream
    needs; the server reads its end continuously, so the event loop never waits long.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()
        self.posted: list[bytes] = []

    def send(self, message: list[Any]) -> None:
        self.send_bytes(pack(message))

    def send_bytes(self, data: bytes) -> None:
        with self.lock:
            if self.posted:  # posted frames go first: a stream's items stay before its end or error
                data = b"".join((*self.posted, data))
                self.posted.clear()
            self._write(data)

    def post(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """Send `data` once the event loop's current turn ends, in one write with everything else
        posted in that turn; on the loop's thread only. The streams of an engine that batches on the
        loop (vLLM: one step's items for every request) then cost one write, and one wake-up of the
        server, per step instead of one per stream."""
        with self.lock:
            self.posted.append(data)
            if len(self.posted) > 1:
                return  # its flush is already due
        loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:
            if self.posted:
                data = b"".join(self.posted)
                self.posted.clear()
                self._write(data)

    def _write(self, data: bytes) -> None:
        """Under the lock."""
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:  # the socket is non-blocking: it is shared with the loop's reader
                select.select([], [self.sock], [])
