"""Continuous batching, in the worker: concurrent generations share the model's steps.

One thread runs the batch. At each step boundary the requests that arrived join it, by one prefill
of their prompts together (their first tokens go out at once: a newcomer never waits behind
another's remaining tokens), then one decode step makes the next token of every sequence in the
batch together. A sequence leaves at its end token, at its `max_tokens`, or when its request is
cancelled (a stop string matched, or its client left); the others go on. At most `max_num_seqs`
generate at once; the rest queue in arrival order.

The engine supplies the steps (`BatchSteps`): the model, its cache and its sampler are its own;
this module knows only token ids, so any engine whose library can run a step for many sequences
can use it. Tokens reach each request through its `TokenHandover`, as with `GeneratingThread`.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from modelyard.llm.engine import Generation
from modelyard.llm.handover import Detokenizer, TokenHandover, stream_chunks


class Sequence:
    """One request in the batch: its prompt, the tokens generated so far, and a slot (`state`)
    for what the engine keeps per sequence (a sampler's random generator, say)."""

    __slots__ = ("prompt_ids", "generation", "handover", "end_ids", "tokens", "state", "failure")

    def __init__(self, prompt_ids: list[int], generation: Generation, handover: TokenHandover,
                 end_ids: frozenset[int]) -> None:
        self.prompt_ids, self.generation, self.handover, self.end_ids = prompt_ids, generation, handover, end_ids
        self.tokens: list[int] = []
        self.state: Any = None
        self.failure: BaseException | None = None

    @property
    def params(self):
        return self.generation.params

    def add(self, token: int) -> bool:
        """Hand `token` over; True when it ends this sequence."""
        self.tokens.append(token)
        self.handover.put([token])
        return token in self.end_ids or len(self.tokens) >= self.generation.max_tokens


class BatchSteps(Protocol):
    """What an engine implements to be batched. The batch's rows are in the order sequences joined,
    less those that left; every call is made from the batch's one thread."""

    def join(self, sequences: list[Sequence]) -> list[int]:
        """Run these sequences' prompts, add them as the batch's last rows (in this order), and
        return the first token of each. Raising, it leaves the batch as it was."""

    def step(self, sequences: list[Sequence]) -> list[int]:
        """One decode step for every row (`sequences`, in row order, each fed its last token):
        the next token of each."""

    def leave(self, rows: list[int]) -> None:
        """Drop these rows from the batch (all of them when the batch failed)."""


class ContinuousBatcher:
    """The batch's thread and its queue. `stream` is called from any thread, once per request."""

    def __init__(self, name: str, steps: BatchSteps, max_num_seqs: int,
                 initializer: Callable[[], None] | None = None) -> None:
        self.name, self.steps, self.max_num_seqs, self.initializer = name, steps, max_num_seqs, initializer
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.arrived = threading.Condition(threading.Lock())
        self.running: list[Sequence] = []
        self.thread: threading.Thread | None = None

    def stream(self, prompt_ids: list[int], generation: Generation, handover: TokenHandover,
               detokenizer: Detokenizer, end_ids: frozenset[int] | set[int]) -> Iterator[list[str]]:
        """Queue this generation and yield its chunks as its tokens come (as `GeneratingThread.stream`)."""
        sequence = Sequence(prompt_ids, generation, handover, frozenset(end_ids))
        with self.arrived:
            if self.thread is None:
                # a daemon: the batch's loop never returns, and must not hold the worker's exit
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()
            self.waiting.append(sequence)
            self.arrived.notify()
        yield from stream_chunks(handover, detokenizer, generation)
        if sequence.failure is not None:
            raise sequence.failure
        if generation.finish_reason is None:
            generation.finish_reason = "length"

    def _run(self) -> None:
        if self.initializer is not None:
            self.initializer()
        while True:
            newcomers = self._newcomers(wait=True)
            while newcomers:
                self._join([s for s in newcomers if not self._cancelled_while_waiting(s)])
                # those that came while these prompts ran join before the step too: a step sooner
                newcomers = self._newcomers(wait=False)
            self._leave([row for row, s in enumerate(self.running) if s.generation.cancelled.is_set()])
            if not self.running:
                continue
            try:
                tokens = self.steps.step(self.running)
            except BaseException as exc:  # the batch's state is gone with it: every row fails
                self._fail_all(exc)
                continue
            self._leave([row for row, (s, t) in enumerate(zip(self.running, tokens, strict=True)) if s.add(t)])

    def _newcomers(self, wait: bool) -> list[Sequence]:
        """Those that may join now; with `wait`, when nothing runs, waits for one."""
        with self.arrived:
            while wait and not self.waiting and not self.running:
                self.arrived.wait()
            room = self.max_num_seqs - len(self.running)
            return [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]

    @staticmethod
    def _cancelled_while_waiting(sequence: Sequence) -> bool:
        if sequence.generation.cancelled.is_set():
            sequence.handover.end()
            return True
        return False

    def _join(self, sequences: list[Sequence]) -> None:
        if not sequences:
            return
        try:
            tokens = self.steps.join(sequences)
        except BaseException as exc:
            if len(sequences) > 1:  # each on its own, so a prompt that fails fails only its request
                for sequence in sequences:
                    self._join([sequence])
                return
            sequences[0].failure = exc
            sequences[0].handover.end()
            return
        first = len(self.running)
        self.running += sequences
        self._leave([first + i for i, (s, t) in enumerate(zip(sequences, tokens, strict=True)) if s.add(t)])

    def _leave(self, rows: list[int]) -> None:
        if not rows:
            return
        try:
            self.steps.leave(rows)
        except BaseException as exc:
            self._fail_all(exc)
            return
        gone = set(rows)
        for row in rows:
            self.running[row].handover.end()
        self.running = [s for row, s in enumerate(self.running) if row not in gone]

    def _fail_all(self, exc: BaseException) -> None:
        rows = list(range(len(self.running)))
        for sequence in self.running:
            sequence.failure = exc
        try:
            self.steps.leave(rows)
        finally:
            for sequence in self.running:
                sequence.handover.end()
            self.running = []
