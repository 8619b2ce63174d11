"""Core's continuous batcher (`modelyard.llm.scheduler`) against scripted batch steps: who joins
when, who leaves when, and what a failure takes down. The steps here are a stand-in for an engine's
(the transformers engine's real ones are tested in its plugin); each sequence's tokens are its
prompt's first id plus 1, 2, 3, ... so every row's tokens say whose they are."""

from __future__ import annotations

import threading

import pytest

from modelyard.llm.engine import Generation
from modelyard.llm.handover import Detokenizer, TokenHandover
from modelyard.llm.params import GenerateParams
from modelyard.llm.scheduler import ContinuousBatcher

END = 999


class ScriptedSteps:
    """Batch steps that record every call; `gate` holds each decode step until the test lets it go."""

    def __init__(self, fail_join_for: int | None = None, fail_step_at: int | None = None) -> None:
        self.rows: list[int] = []  # each row's prompt's first id
        self.calls: list[tuple] = []
        self.fail_join_for, self.fail_step_at = fail_join_for, fail_step_at
        self.steps = 0
        self.most_rows = 0
        self.gate: threading.Semaphore | None = None

    def join(self, sequences):
        firsts = [s.prompt_ids[0] for s in sequences]
        self.calls.append(("join", firsts))
        if self.fail_join_for in firsts:
            raise ValueError(f"bad prompt {self.fail_join_for}")
        self.rows += firsts
        self.most_rows = max(self.most_rows, len(self.rows))
        return [f + 1 for f in firsts]

    def step(self, sequences):
        if self.gate is not None:
            assert self.gate.acquire(timeout=10)
        self.steps += 1
        assert [s.prompt_ids[0] for s in sequences] == self.rows, "rows out of order"
        self.calls.append(("step", list(self.rows)))
        if self.steps == self.fail_step_at:
            raise RuntimeError("the step failed")
        return [s.prompt_ids[0] + len(s.tokens) + 1 for s in sequences]

    def leave(self, rows):
        self.calls.append(("leave", [self.rows[r] for r in rows]))
        self.rows = [f for i, f in enumerate(self.rows) if i not in set(rows)]


def request(batcher, first: int, max_tokens: int, end_ids=(END,)):
    """The generator of one request's chunks, its Generation, and a list its tokens' texts go to."""
    generation = Generation(prompt_tokens=1, max_tokens=max_tokens, params=GenerateParams(temperature=0))
    detokenizer = Detokenizer(lambda ids: " ".join(map(str, ids)), set(end_ids), generation)
    chunks = batcher.stream([first], generation, TokenHandover(0), detokenizer, set(end_ids))
    return chunks, generation


def run_while_stepping(steps: ScriptedSteps, step_count: int, *readers) -> None:
    """Start a thread per reader, let `step_count` decode steps go, and wait for the readers."""
    threads = [threading.Thread(target=reader) for reader in readers]
    for thread in threads:
        thread.start()
    for _ in range(step_count):
        steps.gate.release()
    for thread in threads:
        thread.join(10)


def tokens_of(chunks) -> list[int]:
    return [int(t) for chunk in chunks for t in "".join(chunk).split()]


def test_a_lone_request_runs_its_prompt_then_steps_until_max_tokens():
    steps = ScriptedSteps()
    batcher = ContinuousBatcher("test-batch", steps, max_num_seqs=4)
    chunks, generation = request(batcher, 10, max_tokens=3)
    assert tokens_of(chunks) == [11, 12, 13]
    assert generation.finish_reason == "length" and generation.completion_tokens == 3
    assert steps.calls == [("join", [10]), ("step", [10]), ("step", [10]), ("leave", [10])]


def test_an_end_token_ends_only_its_own_sequence():
    steps = ScriptedSteps()
    batcher = ContinuousBatcher("test-batch", steps, max_num_seqs=4)
    steps.gate = threading.Semaphore(0)
    short, short_gen = request(batcher, END - 2, max_tokens=10)  # its second token is END
    long, long_gen = request(batcher, 20, max_tokens=4)
    results: dict[str, list[int]] = {}
    run_while_stepping(steps, 8, *(lambda n=n, c=c: results.__setitem__(n, tokens_of(c))
                                   for n, c in (("short", short), ("long", long))))
    assert results["short"] == [END - 1] and short_gen.finish_reason == "stop"
    assert results["long"] == [21, 22, 23, 24] and long_gen.finish_reason == "length"
    left = [c for c in steps.calls if c[0] == "leave"]
    assert left == [("leave", [END - 2]), ("leave", [20])]


def test_newcomers_join_at_the_next_step_together_and_at_most_max_num_seqs_run():
    steps = ScriptedSteps()
    batcher = ContinuousBatcher("test-batch", steps, max_num_seqs=2)
    steps.gate = threading.Semaphore(0)
    first, _ = request(batcher, 100, max_tokens=3)
    out: dict[int, list[int]] = {}
    runner = threading.Thread(target=lambda: out.__setitem__(100, tokens_of(first)))
    runner.start()
    while not any(c[0] == "join" for c in steps.calls):
        threading.Event().wait(0.001)
    # three more arrive while the first is held in its first step: one fits now, two must wait
    others = {f: request(batcher, f, max_tokens=2)[0] for f in (200, 300, 400)}
    threads = [threading.Thread(target=lambda f=f, c=c: out.__setitem__(f, tokens_of(c))) for f, c in others.items()]
    for thread in threads:
        thread.start()
    while len(batcher.waiting) < 3:
        threading.Event().wait(0.001)
    for _ in range(20):
        steps.gate.release()
    for thread in [runner, *threads]:
        thread.join(10)
    assert out == {100: [101, 102, 103], 200: [201, 202], 300: [301, 302], 400: [401, 402]}
    assert max(len(c[1]) for c in steps.calls if c[0] == "step") == 2
    assert steps.most_rows == 2  # never beyond the cap, which was reached


def test_a_cancelled_request_leaves_the_batch_and_the_others_go_on():
    steps = ScriptedSteps()
    batcher = ContinuousBatcher("test-batch", steps, max_num_seqs=4)
    steps.gate = threading.Semaphore(0)
    leaving, leaving_gen = request(batcher, 50, max_tokens=100)
    staying, _ = request(batcher, 60, max_tokens=5)
    out: list[int] = []
    stayer = threading.Thread(target=lambda: out.extend(tokens_of(staying)))
    assert next(leaving)  # its first token came (from its prompt)
    stayer.start()
    leaving.close()  # the client left
    assert leaving_gen.cancelled.is_set()
    for _ in range(10):
        steps.gate.release()
    stayer.join(10)
    assert out == [61, 62, 63, 64, 65]
    assert ("leave", [50]) in steps.calls
    assert all(50 not in c[1] for c in steps.calls[steps.calls.index(("leave", [50])) + 1:])


def test_a_prompt_that_fails_fails_its_own_request_only():
    steps = ScriptedSteps(fail_join_for=7)
    batcher = ContinuousBatcher("test-batch", steps, max_num_seqs=4)
    steps.gate = threading.Semaphore(0)
    bad, _ = request(batcher, 7, max_tokens=3)
    good, _ = request(batcher, 8, max_tokens=3)
    errors: list[BaseException] = []
    out: list[int] = []

    def run_bad():
        try:
            tokens_of(bad)
        except ValueError as exc:
            errors.append(exc)

    run_while_stepping(steps, 10, run_bad, lambda: out.extend(tokens_of(good)))
    assert [str(e) for e in errors] == ["bad prompt 7"]
    assert out == [9, 10, 11]


def test_a_failed_step_fails_every_running_request_and_the_next_request_still_runs():
    steps = ScriptedSteps(fail_step_at=1)
    batcher = ContinuousBatcher("test-batch", steps, max_num_seqs=4)
    chunks, _ = request(batcher, 30, max_tokens=5)
    with pytest.raises(RuntimeError, match="the step failed"):
        tokens_of(chunks)
    chunks, _ = request(batcher, 40, max_tokens=2)
    assert tokens_of(chunks) == [41, 42]
