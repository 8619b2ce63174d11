"""Parts every token-streaming LLM engine needs, in the worker: the hand-over of token ids from the
generating thread to the consuming one, incremental detokenization, and the consuming loop that
turns them into the chunks `LLMEngine.stream_tokens` yields (with cancellation when it ends early).

An engine adapts its library's streamer to `TokenHandover.put(ids)`, runs generation in its one
generating thread, and returns `stream_chunks(...)` from `stream_tokens`.
"""

from __future__ import annotations

import sys
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
    ended = False
    try:
        while (tokens := handover.take()) is not None:
            if handover.window == 0:
                for token in tokens:
                    yield [detokenizer.text_of(token)]
            else:
                yield [detokenizer.text_of(token) for token in tokens]
        ended = True
    finally:
        generation.cancelled.set()
        if not ended:
            print(f"modelyard: generation stopped after {generation.completion_tokens} of at most "
                  f"{generation.max_tokens} tokens", file=sys.stderr, flush=True)
