"""The local process backend: one worker process per model, linked by a socket pair.

The worker runs in its own session (so its process group can be ended as a whole); its stdout
and stderr go through a pipe that a thread drains into its log file (worker_log.py). The
socket is the lifeline both ways: the worker exits when it closes, and the server learns of a
worker's death the moment it closes.

Spare workers are started before their model is known (`start_spares`, at a restoring server's
start, before the app is even imported): the interpreter's start and the worker's imports then
overlap the server's own, and `spawn` hands a spare its model in the LAUNCH message instead of
starting a process. Only a worker of the server's own Python whose launch sets no environment
variables of its own takes a spare, since variables set after an interpreter's start do not all
take effect (PYTHON*, LD_*, and what modelyard reads at import); a GPU placement does, as nothing
in a worker touches a GPU before its model loads.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest, LaunchFailed, Unavailable, rebuild_error
from modelyard.worker import protocol as p
from modelyard_server.worker_log import LogWriter, open_pipe, remove_log

TAIL_BYTES = 8192
TAIL_LINES = 20
# After a worker exits, how long its log's last lines may take to reach the file.
LOG_DRAIN_SECONDS = 2.0


def log_tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> str:
    """The last lines of a log file, read from its end whatever its size."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class WorkerGone(Unavailable):
    pass


class LocalWorker:
    """The server's end of one worker process."""

    def __init__(self, uid: str, process: subprocess.Popen, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, log_path: Path, log_writer: LogWriter,
                 on_progress: Callable[[str, float, str], None], environ: dict[str, str] | None = None):
        self.uid = uid
        self.environ = environ  # a spare's: the variables its LAUNCH sets before the model loads
        self.process = process
        self.pid = process.pid
        self.writer = writer
        self.log_path = log_path
        self.log_writer = log_writer
        self.on_progress = on_progress
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, asyncio.Future | asyncio.Queue] = {}
        self.pings: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.gone_reason: str | None = None
        loop = asyncio.get_running_loop()
        self._reader_task = loop.create_task(self._read(reader))
        # The process, not the socket, says when the worker is gone: a child the model forked may
        # hold the socket open after the worker died.
        threading.Thread(target=self._watch, args=(loop,), name=f"watch-{uid}", daemon=True).start()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self.process.wait()
        # What the model started dies with it (the group is still ours while any member lives);
        # then the log's pipe closes, and its last lines are on disk before anyone reads them.
        _signal_group(self.pid, signal.SIGKILL)
        self.log_writer.join(LOG_DRAIN_SECONDS)
        loop.call_soon_threadsafe(self._on_exit, code)

    # -- incoming -------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            async for message in p.messages(reader):
                self._on_message(message)
        except ConnectionError:
            pass  # the worker died (a reset as it went): its exit, seen by _watch, says how
        except Exception as exc:  # a corrupt frame: the link is lost, and so is the worker
            self.gone_reason = f"the link to its worker broke: {exc}"
            _signal_group(self.pid, signal.SIGKILL)
        finally:
            self.writer.close()

    def _on_message(self, message: list[Any]) -> None:
        kind = message[0]
        if kind in (p.RESULT, p.ERROR):
            waiter = self.pending.pop(message[1], None)
            if waiter is None:
                return
            if kind == p.RESULT:
                value: Any = message[2]
            else:
                value = rebuild_error(message[2], message[3], message[4])
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait((kind, value))
            elif not waiter.done():
                waiter.set_result(value) if kind == p.RESULT else waiter.set_exception(value)
        elif kind in (p.CHUNK, p.END):
            queue = self.pending.get(message[1])
            if isinstance(queue, asyncio.Queue):
                queue.put_nowait((kind, message[2] if kind == p.CHUNK else None))
                if kind == p.END:
                    self.pending.pop(message[1], None)
        elif kind == p.PONG:
            waiter = self.pings.pop(message[1], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message[2])
        elif kind == p.PROGRESS:
            self.on_progress(message[1], message[2], message[3])
        elif kind == p.READY:
            if not self.ready.done():
                self.ready.set_result(message[1])
        elif kind == p.FAILED:
            if not self.ready.done():
                self.ready.set_exception(LaunchFailed(message[2]))

    def _on_exit(self, code: int) -> None:
        if self.exited.done():
            return
        reason = self.gone_reason or f"its worker process (pid {self.pid}) exited with code {code}"
        error = WorkerGone(f"Model {self.uid!r} is unavailable: {reason}.")
        if not self.ready.done():
            tail = log_tail(self.log_path)
            self.ready.set_exception(LaunchFailed(
                f"The worker exited with code {code} while loading" + (f"; its last output:\n{tail}" if tail else "")))
        for waiter in self.pending.values():
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait((p.ERROR, error))
            elif not waiter.done():
                waiter.set_exception(error)
        self.pending.clear()
        self.exited.set_result(code)

    # -- outgoing -------------------------------------------------------------------------

    @property
    def reachable(self) -> bool:
        """False once its link has closed or its process exited: the link closes as it dies, before
        its exit is handled, and a write then is an error under uvloop (lost under asyncio)."""
        return not self.exited.done() and not self.writer.is_closing()

    def _check_alive(self) -> None:
        if self.exited.done():
            raise WorkerGone(f"Model {self.uid!r} is unavailable: its worker process exited "
                             f"with code {self.exited.result()}.")
        if not self.reachable:
            raise WorkerGone(f"Model {self.uid!r} is unavailable: the link to its worker process "
                             f"(pid {self.pid}) has closed, as it ends.")

    async def _send(self, packed: bytes) -> None:
        """One message to the worker; WorkerGone once it cannot get there."""
        self._check_alive()
        try:
            await p.send_bytes(self.writer, packed)
        except ConnectionError:  # lost while its writes waited to drain
            raise WorkerGone(f"Model {self.uid!r} is unavailable: the link to its worker process "
                             f"(pid {self.pid}) was lost.") from None

    async def _send_call(self, rid: int, message: list[Any]) -> None:
        try:
            packed = p.pack(message)
        except (OverflowError, ValueError, TypeError, UnicodeError, RecursionError) as exc:
            self.pending.pop(rid, None)
            raise InvalidRequest(f"The request holds a value that cannot be passed to the model: "
                                 f"{type(exc).__name__}: {exc}") from None
        try:
            await self._send(packed)
        except WorkerGone:
            self.pending.pop(rid, None)
            raise

    async def launch(self, launch: dict[str, Any]) -> dict[str, Any]:
        message = [p.LAUNCH, launch if self.environ is None else {**launch, "environ": self.environ}]
        try:
            await self._send(p.pack(message))
        except WorkerGone:
            pass  # it died as it started: its exit, with its last output, fails `ready`
        return await self.ready

    async def call(self, method: str, args: list, kwargs: dict, mode: str = p.MODE_JSON) -> Any:
        """One result; cancelling the awaiting task cancels the call in the worker."""
        self._check_alive()
        rid = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        try:
            await self._send_call(rid, [p.CALL, rid, method, args, kwargs, mode])
            return await future
        except asyncio.CancelledError:
            self._cancel(rid)
            raise

    async def stream(self, method: str, args: list, kwargs: dict,
                     mode: str = p.MODE_STREAM_JSON) -> AsyncIterator[list[Any]]:
        """The items a generator method yields, in lists of those that arrived together (so a
        fast stream costs one write per group downstream); closing early cancels the call."""
        self._check_alive()
        rid = next(self.ids)
        queue: asyncio.Queue = asyncio.Queue()
        self.pending[rid] = queue
        finished = False
        passed_on = 0  # chunks handed downstream since the last grant of credit
        try:
            await self._send_call(rid, [p.CALL, rid, method, args, kwargs, mode])
            while not finished:
                messages = [await queue.get()]
                while not queue.empty():
                    messages.append(queue.get_nowait())
                batch = []
                for kind, value in messages:
                    if kind in (p.CHUNK, p.RESULT):  # RESULT: the method returned instead of streaming
                        batch.append(value)
                    if kind != p.CHUNK:
                        finished = True
                        if kind == p.ERROR:
                            if batch:
                                yield batch
                            raise value
                        break
                if batch:
                    yield batch  # returns once downstream wants more: the batch has been passed on
                    passed_on += len(batch)
                    if not finished and passed_on >= p.STREAM_CREDIT // 2 and self.reachable:
                        self.writer.write(p.pack([p.CREDIT, rid, passed_on]))
                        passed_on = 0
        finally:
            if not finished:
                self._cancel(rid)

    async def ping(self, timeout: float) -> dict[str, Any]:
        """The worker's health report; TimeoutError when its event loop does not answer in time."""
        self._check_alive()
        token = next(self.ids)
        waiter = asyncio.get_running_loop().create_future()
        self.pings[token] = waiter
        try:
            await self._send(p.pack([p.PING, token]))
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self.pings.pop(token, None)

    def _cancel(self, rid: int) -> None:
        if self.pending.pop(rid, None) is not None and self.reachable:
            self.writer.write(p.pack([p.CANCEL, rid]))

    async def stop(self, grace: float) -> int:
        """End the worker's whole process group: TERM, then KILL after `grace` seconds. Once the
        worker has exited its group was already killed (_on_exit), and its id may since be reused."""
        if not self.exited.done():
            _signal_group(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), grace)
            except asyncio.TimeoutError:
                _signal_group(self.pid, signal.SIGKILL)
        return await self.exited


# What a launch may set in a spare's environment; any other variable needs a fresh process.
SPARE_VARIABLES = frozenset({"CUDA_VISIBLE_DEVICES"})
MAX_SPARES = 8


@dataclass
class Spare:
    """A worker started before its model: it waits on its socket for the LAUNCH that names it."""

    process: subprocess.Popen
    ours: socket.socket
    read_end: int  # its output, drained into the log of the model it is given

    def end(self) -> None:
        self.ours.close()  # its lifeline: it exits on its own
        if self.process.poll() is None:  # once reaped, its id may be another's
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.read_end)


def start_spares(count: int) -> list[Spare]:
    """`count` (at most MAX_SPARES) workers of the server's own Python, without a model yet."""
    spares = []
    for _ in range(min(count, MAX_SPARES)):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        read_end, write_end = open_pipe()
        try:
            process = _start_worker_process(sys.executable, theirs, write_end, {})
        except OSError:
            ours.close()
            os.close(read_end)
            break
        finally:
            theirs.close()
            os.close(write_end)
        spares.append(Spare(process, ours, read_end))
    return spares


def _start_worker_process(python: str, theirs: socket.socket, write_end: int, env: dict[str, str],
                          uid: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [python, "-m", "modelyard.worker", "--fd", str(theirs.fileno()), "--model-uid", uid],
        stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(),),
        start_new_session=True, env={**worker_environment(), **env, "PYTHONUNBUFFERED": "1"})


def worker_environment() -> dict[str, str]:
    """The server's environment less its keys: a model's code never sees them."""
    return {k: v for k, v in os.environ.items() if k not in config.SECRET_VARIABLES}


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalProcessBackend:
    """Spawns workers on this machine."""

    def __init__(self, home: Path, log_max_bytes: int = 64 << 20, log_backups: int = 5,
                 spares: list[Spare] | None = None):
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.spares = list(spares or ())

    def log_path(self, uid: str, replica: int = 0) -> Path:
        # "@" is no character of a uid: a replica's log never meets another model's
        return self.logs / (f"{uid}.log" if replica == 0 else f"{uid}@{replica}.log")

    def end_spares(self) -> None:
        """End the spares nobody took (the restore is done)."""
        while self.spares:
            self.spares.pop().end()

    def _take_spare(self, python: str | None, env: dict[str, str]) -> Spare | None:
        if python is not None or not env.keys() <= SPARE_VARIABLES:
            return None
        while self.spares:
            spare = self.spares.pop(0)
            if spare.process.poll() is None:
                return spare
            spare.end()
        return None

    async def spawn(self, uid: str, *, python: str | None = None, env: dict[str, str] | None = None,
                    on_progress: Callable[[str, float, str], None], replica: int = 0) -> LocalWorker:
        own = {**(env or {}), "MODELYARD_MODEL_UID": uid, "MODELYARD_REPLICA": str(replica)}
        log_path = self.log_path(uid, replica)
        remove_log(log_path, self.log_backups)
        spare = self._take_spare(python, env or {})
        if spare is not None:
            process, ours, read_end, environ = spare.process, spare.ours, spare.read_end, own
        else:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            read_end, write_end = open_pipe()
            try:
                process = _start_worker_process(python or sys.executable, theirs, write_end, own, uid)
            except BaseException:
                os.close(read_end)
                raise
            finally:
                theirs.close()
                os.close(write_end)  # the worker holds the only write end now: EOF means it (and its children) left
            environ = None
        log_writer = LogWriter(read_end, log_path, self.log_max_bytes, self.log_backups)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        except BaseException:  # cancelled mid-spawn: the process must not outlive its launch
            _signal_group(process.pid, signal.SIGKILL)
            ours.close()
            raise
        return LocalWorker(uid, process, reader, writer, log_path, log_writer, on_progress, environ)
