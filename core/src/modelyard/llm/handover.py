"""Parts every token-streaming LLM engine needs, in the worker: the one generating thread, the
hand-over of token ids from it to the consuming thread, incremental detokenization, and the
consuming loop that turns them into what `LLMEngine.stream_tokens` yields (with cancellation when
it ends early).

An engine adapts its library's streamer to `TokenHandover.put(ids)` and returns
`GeneratingThread.stream(...)` from `stream_tokens`.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator

from modelyard.llm.engine import Generation


class TokenHandover:
    """Hands new token ids to the consuming thread.

    The consumer is woken at once for a slow stream, but at most once per `window` for a fast one:
    each wake-up of the consumer contends with generation for the GIL, and on a small machine that
    costs more than the tokens themselves. A token waits at most about a window and one token's time."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.ready = threading.Condition(threading.Lock())
        self.pending: list[int] = []
        self.ended = False
        self.put_at = self.woken_at = 0.0

    def put(self, ids: list[int]) -> None:
        now = time.monotonic()
        with self.ready:
            self.pending += ids
            if now - self.put_at >= self.window or now - self.woken_at >= self.window:
                self.woken_at = now
                self.ready.notify()
        self.put_at = now

    def end(self) -> None:
        with self.ready:
            self.ended = True
            self.ready.notify()

    def take(self) -> list[int] | None:
        """The token ids that arrived since the last call, waiting for some; None once generation ended."""
        with self.ready:
            while not self.pending and not self.ended:
                self.ready.wait()
            tokens, self.pending = self.pending, []
            return tokens or None


class Detokenizer:
    """Incremental decoding over a short window: the text of ids[start:] minus the text of
    ids[start:done], so each token costs the same however long the answer grows. Counts the
    generation's tokens and notes an end token as finish_reason "stop"."""

    def __init__(self, decode: Callable[[list[int]], str], end_ids: set[int] | list[int], generation: Generation):
        self.decode, self.end_ids, self.generation = decode, set(end_ids), generation
        self.ids: list[int] = []
        self.start = self.done = 0

    def text_of(self, token: int) -> str:
        self.generation.completion_tokens += 1
        if token in self.end_ids:
            self.generation.finish_reason = "stop"
            return ""
        self.ids.append(token)
        before = self.decode(self.ids[self.start:self.done])
        text = self.decode(self.ids[self.start:])
        if text.endswith("\ufffd") or len(text) <= len(before):
            return ""  # an incomplete UTF-8 sequence: wait for the next token
        self.start, self.done = self.done, len(self.ids)
        return text[len(before):]


def stream_chunks(handover: TokenHandover, detokenizer: Detokenizer, generation: Generation) -> Iterator[list[str]]:
    """The chunks of a generation as its tokens are handed over: the tokens handed over together
    make one chunk (one text per token), or each its own when the window is 0. However it ends
    (its client left, a stop string matched), generation is told to stop."""
    try:
        while (tokens := handover.take()) is not None:
            if handover.window == 0:
                for token in tokens:
                    yield [detokenizer.text_of(token)]
            else:
                yield [detokenizer.text_of(token) for token in tokens]
    finally:
        generation.cancelled.set()


class GeneratingThread:
    """The one thread that runs a model's generations, in turn: a request's seed then fully decides
    its sampling even while others wait, and per-thread set-up (OpenMP keeps its thread count per
    thread) is done once, by `initializer`."""

    def __init__(self, name: str, initializer: Callable[[], None] | None = None) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name, initializer=initializer)

    def stream(self, generate: Callable[[], None], handover: TokenHandover, detokenizer: Detokenizer,
               generation: Generation) -> Iterator[list[str]]:
        """Run `generate()` (which feeds `handover`) in this thread, and yield its chunks as they
        come; it is skipped if the request was cancelled while it waited for its turn. Its error is
        raised here, after the tokens it made; an end without an end token is "length"."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                if not generation.cancelled.is_set():
                    generate()
            except BaseException as exc:
                failure.append(exc)
            finally:
                handover.end()

        done = self.pool.submit(run)
        yield from stream_chunks(handover, detokenizer, generation)
        done.result()
        if failure:
            raise failure[0]
        if generation.finish_reason is None:
            generation.finish_reason = "length"
