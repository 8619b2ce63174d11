"""The worker's event loop: load the model, then answer calls until the server goes away.

Sync model methods run in a thread pool so many calls are in flight at once and the loop stays
free to answer pings and cancellations; coroutine methods run on the loop itself. A streamed call
runs in a thread of its own pool, which also iterates the model's generator and sends the items.

A model that declares `concurrency = N` (YOLO and pipelines, which are not thread-safe, declare 1)
is entered by at most N calls at once: the others wait on the loop, holding no thread, and a call
cancelled while its model runs holds its place until the model has returned.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.metadata
import inspect
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from modelyard import config, jsonable
from modelyard.errors import InvalidRequest, ModelBroken, ModelError, ModelyardError
from modelyard.worker import protocol as p
from modelyard.worker.loader import LoadedModel, load_model

CALL_THREADS = 16
# Threads that run generators: each holds its thread until it ends, so there may be as many as
# there are streams (a pool only starts a thread when none is idle, so these are reused).
STREAM_THREADS = 4096
STREAM_WINDOW = config.stream_window()


class Worker:
    def __init__(self, sender: p.Sender):
        self.sender = sender
        self.loop = asyncio.get_running_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="modelyard-call")
        self.streams = concurrent.futures.ThreadPoolExecutor(STREAM_THREADS, thread_name_prefix="modelyard-stream")
        self.tasks: dict[int, asyncio.Task] = {}
        self.loaded: LoadedModel | None = None
        self.signatures: dict[str, inspect.Signature | None] = {}
        # When each in-flight call last made progress (started, or yielded an item): health pings
        # report the oldest, so the server can tell a hung call from a busy worker. One clock per
        # call, which its thread sets: a thread that outlives its call sets a clock nobody reads.
        self.progress_at: dict[int, _Clock] = {}
        self.credits: dict[int, _Credit] = {}  # of the streams in flight
        self.gate: asyncio.Semaphore | None = None  # the model's declared concurrency
        self.one_at_a_time = False  # declared concurrency 1

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        self.sender.send([p.PROGRESS, stage, fraction, message])

    async def load(self, launch: dict[str, Any]) -> bool:
        try:
            self.loaded = await self.loop.run_in_executor(self.pool, load_model, launch, self.progress)
            start = getattr(self.loaded.model, "start", None)
            if inspect.iscoroutinefunction(start):
                await start()
        except BaseException as exc:
            traceback.print_exc()
            error_type = exc.type if isinstance(exc, ModelyardError) else "launch_error"
            message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            self.sender.send([p.FAILED, error_type, message])
            return False
        concurrency = getattr(self.loaded.model, "concurrency", None)
        if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency >= 1:
            self.gate = asyncio.Semaphore(concurrency)
            self.one_at_a_time = concurrency == 1
        for name in self.loaded.abilities:
            method = getattr(self.loaded.model, name, None)
            try:
                self.signatures[name] = inspect.signature(method) if method is not None else None
            except (TypeError, ValueError):
                self.signatures[name] = None
        self.sender.send([p.READY, {"pid": os.getpid(), "abilities": self.loaded.abilities, **self.loaded.info,
                                    "packages": versions(launch.get("packages", ()))}])
        return True

    def dispatch(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == p.CALL:
            _, rid, method, args, kwargs, mode = message
            self.progress_at[rid] = _Clock()
            task = self.loop.create_task(self.call(rid, method, args, kwargs, mode))
            self.tasks[rid] = task
            task.add_done_callback(lambda _t, rid=rid: self._forget(rid))
        elif kind == p.CREDIT:
            credit = self.credits.get(message[1])
            if credit is not None:
                credit.grant(message[2])
        elif kind == p.CANCEL:
            task = self.tasks.get(message[1])
            if task is not None:
                task.cancel()
        elif kind == p.PING:
            now = time.monotonic()
            stalled = max(0.0, now - min((clock.at for clock in self.progress_at.values()), default=now))
            self.sender.send([p.PONG, message[1], {"in_flight": len(self.tasks), "stalled_seconds": stalled}])

    def _forget(self, rid: int) -> None:
        self.tasks.pop(rid, None)
        self.progress_at.pop(rid, None)

    async def call(self, rid: int, name: str, args: list, kwargs: dict, mode: str) -> None:
        encode = jsonable.dumps if mode in (p.MODE_JSON, p.MODE_STREAM_JSON) else _as_is
        streaming = mode in (p.MODE_STREAM_JSON, p.MODE_STREAM)
        stop = threading.Event()
        if streaming:
            self.credits[rid] = _Credit(p.STREAM_CREDIT, self.loop)
        try:
            frames = _Coalescer(self.sender, self.loop, STREAM_WINDOW) if streaming else None
            method = self._method(name, args, kwargs)
            async with self._gated(rid):
                if inspect.iscoroutinefunction(method):
                    result = await method(*args, **kwargs)
                    produce = functools.partial(_as_is, result) if inspect.isgenerator(result) else None
                else:
                    produce = functools.partial(method, *args, **kwargs)
                if produce is not None:
                    # a generator, streamed or collected, holds its thread until it ends: not one of the call pool's
                    lasting = streaming or inspect.isgeneratorfunction(method) or produce.func is _as_is
                    pool = self.streams if lasting else self.pool
                    running = self.loop.run_in_executor(pool, self._produce, rid, produce, encode, frames, stop)
                    result = await (running if self.gate is None else self._hold(running, rid, stop))
                if inspect.isasyncgen(result):
                    result = await self._drain(rid, result, encode, frames)
            if result is not _STREAMED and result is not _ANSWERED:
                self.sender.send([p.RESULT, rid, encode(result)])
        except asyncio.CancelledError:
            pass  # the caller is gone; nobody waits for an answer
        except ModelyardError as exc:
            self.sender.send([p.ERROR, rid, exc.type, exc.status, exc.message])
            if isinstance(exc, ModelBroken):
                print(f"modelyard: {exc.message}; the worker ends, for the restart policy to start a fresh one",
                      file=sys.stderr, flush=True)
                end_process_group()
        except jsonable.NotJSONable as exc:
            self.sender.send([p.ERROR, rid, ModelError.type, 500, f"{name}() returned {exc}"])
        except BaseException as exc:  # SystemExit from model code (argparse...) must not end the worker
            traceback.print_exc()
            self.sender.send([p.ERROR, rid, ModelError.type, 500, f"{type(exc).__name__}: {exc}"])
        finally:
            stop.set()  # a cancelled stream stops the model's generator at its next item
            credit = self.credits.pop(rid, None)
            if credit is not None:
                credit.close()  # nor may it wait for credit any longer

    async def _hold(self, running: asyncio.Future, rid: int, stop: threading.Event) -> Any:
        """`running`'s result; cancelled, it still waits for the model to return, so a gated
        model is never entered by the next call while this one's thread runs on."""
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            stop.set()
            credit = self.credits.get(rid)
            if credit is not None:
                credit.close()
            while not running.done():  # a second cancel must not free the model's place early either
                try:
                    await asyncio.shield(running)
                except asyncio.CancelledError:
                    continue
                except BaseException:
                    break
            if not running.cancelled():
                running.exception()  # retrieved: nobody else will
            raise

    @contextlib.asynccontextmanager
    async def _gated(self, rid: int):
        """Inside the model's declared concurrency; a call waiting for its turn is not stalled."""
        if self.gate is None:
            yield
            return
        clock = self.progress_at.get(rid)
        if clock is not None and self.gate.locked():
            clock.at = math.inf
        try:
            async with self.gate:
                if clock is not None:
                    clock.at = time.monotonic()
                yield
        finally:
            if clock is not None and clock.at == math.inf:
                clock.at = time.monotonic()

    def _method(self, name: str, args: list, kwargs: dict) -> Callable[..., Any]:
        """The model's method `name`, once the arguments are known to fit it."""
        if name not in self.signatures:
            raise InvalidRequest(f"This model has no {name!r} ability; it has: {', '.join(self.signatures) or 'none'}")
        signature = self.signatures[name]
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidRequest(f"Arguments do not fit {name}{signature}: {exc}") from None
        return getattr(self.loaded.model, name)

    def _produce(self, rid: int, produce: Callable[[], Any], encode: Callable[[Any], Any],
                 frames: _Coalescer | None, stop: threading.Event) -> Any:
        """In a pool thread: `produce()`, and when that is a generator, run it here to its end. With
        `frames` each item is sent as it comes, then the end of the stream (_STREAMED); without, the
        items come back as a list. Any other value comes back as it is. The thread sends the items
        itself, so an item costs no hop through the event loop, and a stream's end shares the write
        of its last items."""
        result = produce()
        if not inspect.isgenerator(result):
            if (frames is None and not stop.is_set() and not inspect.isasyncgen(result)  # the loop drains those
                    and (self.one_at_a_time or len(self.tasks) == 1)):
                # The answer leaves from here, without waiting for the event loop's turn (measured:
                # c1 calls of a trivial model 3-19% faster, two runs); with other calls in flight their threads
                # would contend for the GIL and the link, so the loop sends theirs (c16 8% slower
                # from threads). The server drops an answer to a call it has cancelled meanwhile.
                self.sender.send([p.RESULT, rid, encode(result)])
                return _ANSWERED
            return result
        clock = self.progress_at.get(rid) or _Clock()
        credit = self.credits.get(rid)
        items: list[Any] = []
        try:
            for item in result:
                if stop.is_set():
                    return _STREAMED
                clock.at = time.monotonic()
                if frames is None:
                    items.append(item)
                    continue
                frame = p.pack([p.CHUNK, rid, encode(item)])
                if credit is not None and not credit.take(clock):
                    return _STREAMED  # cancelled while waiting for its client
                frames.add(frame)
        finally:
            try:
                result.close()
            finally:
                if frames is not None:
                    frames.flush()  # the items before an error go out before it
        if frames is None:
            return items
        frames.end(p.pack([p.END, rid]))
        return _STREAMED

    async def _drain(self, rid: int, result: Any, encode: Callable[[Any], Any], frames: _Coalescer | None) -> Any:
        """`_produce` for an async generator, on the loop."""
        clock = self.progress_at.get(rid) or _Clock()
        credit = self.credits.get(rid)
        items: list[Any] = []
        try:
            async for item in result:
                clock.at = time.monotonic()
                if frames is None:
                    items.append(item)
                    continue
                frame = p.pack([p.CHUNK, rid, encode(item)])
                if credit is not None and not await credit.take_async(clock):
                    return _STREAMED
                frames.add(frame)
        finally:
            try:
                await result.aclose()
            finally:
                if frames is not None:
                    frames.flush()
        if frames is None:
            return items
        frames.end(p.pack([p.END, rid]))
        return _STREAMED


class _Credit:
    """How many more chunks a stream may send before the server grants more (see protocol). Granted
    and closed on the loop; taken by the stream's thread, or on the loop for an async generator."""

    def __init__(self, available: int, loop: asyncio.AbstractEventLoop) -> None:
        self.available = available
        self.closed = False
        self.changed = threading.Condition()
        self.loop = loop
        self.waiter: asyncio.Future | None = None

    def grant(self, n: int) -> None:
        with self.changed:
            self.available += n
            self.changed.notify_all()
        self._wake()

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def take(self, clock: _Clock) -> bool:
        """Wait for credit for one chunk; False once the stream has ended. A stream waiting for its
        client is not a stalled model: its clock stops counting meanwhile."""
        with self.changed:
            if self.available <= 0 and not self.closed:
                clock.at = math.inf
                while self.available <= 0 and not self.closed:
                    self.changed.wait()
                clock.at = time.monotonic()
            if self.closed:
                return False
            self.available -= 1
            return True

    async def take_async(self, clock: _Clock) -> bool:
        if self.available <= 0 and not self.closed:
            clock.at = math.inf
            while self.available <= 0 and not self.closed:
                self.waiter = self.loop.create_future()
                await self.waiter
            clock.at = time.monotonic()
        if self.closed:
            return False
        self.available -= 1
        return True


def versions(names: Any) -> dict[str, str | None]:
    """The version this process imports of each named distribution (its env's before the server's)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


class _Clock:
    """When a call last made progress."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = time.monotonic()


_STREAMED = object()  # the stream was sent, END included: nothing left to answer
_ANSWERED = object()  # the call's thread sent its RESULT


class _Coalescer:
    """A streamed frame goes out at once when the stream was quiet for half a `window` before it,
    else together with those that follow within the window: a fast model's items then cost one
    write and one wake-up of the server per group, and no item waits more than `window`. Half,
    because an engine that groups its own items by the same window (the transformers engine does)
    hands them over about a window apart: they must pass straight through, with no timer."""

    def __init__(self, sender: p.Sender, loop: asyncio.AbstractEventLoop, window: float):
        self.sender, self.loop, self.window = sender, loop, window
        self.loop_thread = threading.get_ident()  # made on the loop
        self.lock = threading.Lock()
        self.pending: list[bytes] = []
        self.added_at = self.pending_since = 0.0
        self.timer = False

    def add(self, frame: bytes) -> None:
        now = time.monotonic()
        with self.lock:
            self.pending.append(frame)
            if len(self.pending) == 1:
                self.pending_since = now
            if now - self.added_at >= self.window / 2 or now - self.pending_since >= self.window:
                self._send()
            elif not self.timer:
                self.timer = True
                wait = self.pending_since + self.window - now
                self.loop.call_soon_threadsafe(self.loop.call_later, wait, self.flush)
            self.added_at = now

    def flush(self) -> None:
        with self.lock:
            self.timer = False
            self._send()

    def end(self, frame: bytes) -> None:
        """Send what is pending with the stream's last frame, in one write."""
        with self.lock:
            self.pending.append(frame)
            self._send()

    def _send(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            if threading.get_ident() == self.loop_thread:  # with the other streams' items of this turn
                self.sender.post(data, self.loop)
            else:
                self.sender.send_bytes(data)


def _as_is(value: Any) -> Any:
    return value


def end_process_group() -> None:
    """Leave now, with every process the model started: the whole group gets SIGKILL."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.killpg(0, signal.SIGKILL)


async def serve(fd: int) -> bool:
    """Serve until the server closes the link; False when the launch failed."""
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # programs the model runs must not hold the server's lifeline open
    os.register_at_fork(after_in_child=lambda: _close_quietly(fd))  # nor may forked copies of it
    reader, _writer = await asyncio.open_unix_connection(sock=sock)
    worker = Worker(p.Sender(sock))
    incoming = p.messages(reader)
    first = await anext(incoming, None)
    if first is None or first[0] != p.LAUNCH:
        return False
    # A spare worker (started before its model was known) learns its model's variables here,
    # before any of the model's code is imported.
    os.environ.update(first[1].pop("environ", None) or {})
    early: list[list[Any]] = []
    loaded = asyncio.Event()

    async def read() -> None:
        async for message in incoming:
            if loaded.is_set():
                worker.dispatch(message)
            else:
                early.append(message)
        end_process_group()  # the server is gone, even while the model is still loading

    reading = asyncio.ensure_future(read())
    if not await worker.load(first[1]):
        return False
    loaded.set()
    for message in early:
        worker.dispatch(message)
    await reading
    return True


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _die_with_the_server() -> None:
    """SIGTERM (from the server's stop, or from the kernel when the server dies) ends the group."""
    signal.signal(signal.SIGTERM, lambda *_: end_process_group())
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelyard.worker")
    parser.add_argument("--fd", type=int, required=True, help="the socket the server handed over")
    parser.add_argument("--model-uid", default="", help="shown in process listings")
    args = parser.parse_args(argv)
    _die_with_the_server()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve(args.fd))
    # The launch failed (the server ends what the model started), or the link ended without EOF.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
