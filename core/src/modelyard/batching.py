"""Dynamic batching, in the worker: the rows of concurrent requests to one model (texts to embed,
query-document pairs to score) gathered into one engine call.

A request submits its rows and waits for exactly its own outputs. When the model is idle a request
runs at once, alone: nobody waits for a batch to fill. While a batch runs, the requests that come
gather in the queue, and the next batch takes up to `max_rows` of their rows (splitting a large
request across batches, so its rows are never all in one call). Rows batch together only with rows
of the same parameters. One thread runs the engine's calls, one after another.

Right after a batch, its clients are sending their next requests: starting the next batch with
the first to arrive would make it a batch of one, and the rest would wait through it (and so on,
a small batch and a large one by turns). So when a batch ends with N rows in flight (its own, and
those that queued while it ran) from more than one request, the next one waits up to `wait` for N
rows (at most `max_rows`) to be queued. After a lone client's request nothing waits.

When a batch of several requests fails, each request is run again on its own, so a bad input
fails its own request and no other.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable, Hashable, Sequence
from typing import Any


class _Request:
    __slots__ = ("rows", "params", "future", "taken", "outputs", "done")

    def __init__(self, rows: Sequence[Any], params: Hashable, future: asyncio.Future) -> None:
        self.rows, self.params, self.future = rows, params, future
        self.taken = 0  # rows handed to batches so far
        self.done = 0  # rows whose outputs are back
        self.outputs: list[Any] = [None] * len(rows)

    @property
    def live(self) -> bool:
        return not self.future.done()


class Batcher:
    """`run(rows, params)` returns one output per row; it runs in the batcher's own thread."""

    def __init__(self, run: Callable[[list[Any], Hashable], Sequence[Any]], *, max_rows: int, wait: float = 0.0,
                 name: str = "batch", initializer: Callable[[], None] | None = None) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.run, self.max_rows, self.wait = run, max_rows, wait
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name, initializer=initializer)
        self.queue: collections.deque[_Request] = collections.deque()
        self.draining = False
        self.arrived: asyncio.Event | None = None  # set by each submit, for a batch gathering more rows
        #: (rows, requests) of each batch run, for tests and figures; the last 1000
        self.batches: collections.deque[tuple[int, int]] = collections.deque(maxlen=1000)

    async def in_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)` in the batcher's thread, between batches: for what shares the engine's
        state with them (a tokenizer is not safe to use from two threads at once)."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, _guarded, call, *args)

    async def submit(self, rows: Sequence[Any], params: Hashable = ()) -> list[Any]:
        """The outputs of `rows`, in their order."""
        if not rows:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(rows, params, loop.create_future())
        self.queue.append(request)
        if self.arrived is None:
            self.arrived = asyncio.Event()
        self.arrived.set()
        if not self.draining:
            self.draining = True
            loop.create_task(self._drain())
        return await request.future  # cancelled: its rows not yet taken are dropped from the queue

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        active = 0  # rows in flight as the last batch ended: its own, and what queued meanwhile
        clients = 0  # and the requests they came in
        try:
            while True:
                self._forget_dead()
                want = min(self.max_rows, active)
                if clients > 1 and self.wait > 0 and self._queued_rows() < want:
                    await self._gather(want, loop.time() + self.wait)
                    self._forget_dead()
                if not self.queue:
                    return
                batch = self._take()
                if batch:
                    await self._run(loop, batch)
                active = sum(end - start for _, start, end in batch) + self._queued_rows()
                clients = len(batch) + sum(1 for r in self.queue if r.live and r.taken < len(r.rows))
        finally:
            self.draining = False
            if self.queue:  # came while the last batch ended: a new drain serves them
                self.draining = True
                loop.create_task(self._drain())

    async def _gather(self, want: int, deadline: float) -> None:
        """Wait until `want` rows are queued, or `deadline`."""
        loop = asyncio.get_running_loop()
        while self._queued_rows() < want and (left := deadline - loop.time()) > 0:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    def _forget_dead(self) -> None:
        while self.queue and (not self.queue[0].live or self.queue[0].taken >= len(self.queue[0].rows)):
            self.queue.popleft()

    def _queued_rows(self) -> int:
        return sum(len(r.rows) - r.taken for r in self.queue if r.live)

    def _take(self) -> list[tuple[_Request, int, int]]:
        """Up to max_rows rows of the oldest live request's parameters, oldest first."""
        params = self.queue[0].params
        batch, room = [], self.max_rows
        for request in self.queue:
            if room == 0:
                break
            if not request.live or request.params != params or request.taken >= len(request.rows):
                continue
            start = request.taken
            end = min(len(request.rows), start + room)
            request.taken = end
            room -= end - start
            batch.append((request, start, end))
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[_Request, int, int]]) -> None:
        rows = [row for request, start, end in batch for row in request.rows[start:end]]
        params = batch[0][0].params
        self.batches.append((len(rows), len(batch)))
        try:
            outputs = await loop.run_in_executor(self.thread, _guarded, self.run, rows, params)
            if len(outputs) != len(rows):
                raise RuntimeError(f"the engine returned {len(outputs)} outputs for {len(rows)} rows")
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][0], exc)
                return
            for part in batch:  # alone, each request meets only its own errors
                await self._run(loop, [part])
            return
        at = 0
        for request, start, end in batch:
            request.outputs[start:end] = outputs[at:at + end - start]
            at += end - start
            request.done += end - start
            if request.done == len(request.rows) and request.live:
                request.future.set_result(request.outputs)


def _guarded(call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)`, with what must not cross into asyncio's futures (StopIteration cannot be set
    on one; SystemExit from model code must not end the worker) turned into an ordinary error."""
    try:
        return call(*args)
    except (StopIteration, StopAsyncIteration) as exc:
        raise RuntimeError(f"the engine raised {type(exc).__name__}") from exc
    except Exception:
        raise
    except BaseException as exc:
        raise RuntimeError(f"the engine raised {type(exc).__name__}: {exc}") from exc


def _fail(request: _Request, exc: BaseException) -> None:
    if request.live:
        request.future.set_exception(exc)
    request.taken = len(request.rows)  # its remaining rows are not run
