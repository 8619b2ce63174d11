"""The dynamic batcher: what it gathers, how it splits, and who meets whose errors. `run` here is
a recorder, not an engine: it doubles each row and notes each call's rows."""

import asyncio
import threading
import time

import pytest

from modelyard.batching import Batcher


class Recorder:
    def __init__(self, delay=0.0, fail_on=None):
        self.calls, self.delay, self.fail_on = [], delay, fail_on
        self.started = threading.Event()

    def __call__(self, rows, params):
        self.calls.append((list(rows), params))
        self.started.set()
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in rows:
            raise ValueError(f"bad row {self.fail_on}")
        return [row * 2 for row in rows]


def run(coroutine):
    return asyncio.run(coroutine)


def test_an_idle_model_runs_a_request_at_once_alone():
    recorder = Recorder()

    async def main():
        batcher = Batcher(recorder, max_rows=8, wait=5.0)  # a long wait: it must not apply when idle
        started = time.monotonic()
        assert await batcher.submit([1, 2]) == [2, 4]
        return time.monotonic() - started

    assert run(main()) < 1.0 and recorder.calls == [([1, 2], ())]


def test_requests_that_come_while_busy_share_the_next_call_each_getting_its_rows():
    recorder = Recorder(delay=0.2)

    async def main():
        batcher = Batcher(recorder, max_rows=100)
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait)
        rest = [asyncio.ensure_future(batcher.submit([i, i + 100])) for i in range(1, 6)]
        return await first, await asyncio.gather(*rest), list(batcher.batches)

    first, rest, batches = run(main())
    assert first == [0] and rest == [[2 * i, 2 * (i + 100)] for i in range(1, 6)]
    assert len(recorder.calls) == 2 and batches == [(1, 1), (10, 5)]


def test_a_large_request_is_split_into_calls_of_at_most_max_rows():
    recorder = Recorder()

    async def main():
        return await Batcher(recorder, max_rows=4).submit(list(range(10)))

    assert run(main()) == [2 * i for i in range(10)]
    assert [len(rows) for rows, _ in recorder.calls] == [4, 4, 2]


def test_rows_batch_only_with_rows_of_the_same_parameters():
    recorder = Recorder(delay=0.1)

    async def main():
        batcher = Batcher(recorder, max_rows=100)
        first = asyncio.ensure_future(batcher.submit([0], ("a",)))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait)
        others = [asyncio.ensure_future(batcher.submit([i], ("b",) if i % 2 else ("a",))) for i in range(1, 5)]
        await asyncio.gather(first, *others)

    run(main())
    # the oldest waiting request (1, "b") decides the next call; the "a" rows go in the one after
    assert recorder.calls[1:] == [([1, 3], ("b",)), ([2, 4], ("a",))]


def test_a_bad_request_fails_alone_and_the_others_in_its_batch_are_answered():
    recorder = Recorder(delay=0.05, fail_on=13)

    async def main():
        batcher = Batcher(recorder, max_rows=100)
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait)
        batch = [asyncio.ensure_future(batcher.submit(rows)) for rows in ([11], [12, 13], [14])]
        return await first, await asyncio.gather(*batch, return_exceptions=True)

    first, (a, bad, c) = run(main())
    assert first == [0] and a == [22] and c == [28]
    assert isinstance(bad, ValueError) and "bad row 13" in str(bad)


def test_a_cancelled_request_loses_its_rows_not_yet_run():
    recorder = Recorder(delay=0.1)

    async def main():
        batcher = Batcher(recorder, max_rows=100)
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait)
        gone = asyncio.ensure_future(batcher.submit([7, 8]))
        kept = asyncio.ensure_future(batcher.submit([9]))
        await asyncio.sleep(0)
        gone.cancel()
        return await first, await kept

    assert run(main()) == ([0], [18])
    assert all(7 not in rows for rows, _ in recorder.calls)


def test_a_busy_model_waits_up_to_wait_for_a_fuller_batch():
    recorder = Recorder(delay=0.05)

    async def main():
        batcher = Batcher(recorder, max_rows=3, wait=0.3)
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait)
        second = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.1)  # the first call is over; the batcher waits for more
        third = asyncio.ensure_future(batcher.submit([2]))
        return await asyncio.gather(first, second, third)

    assert run(main()) == [[0], [2], [4]]
    assert [rows for rows, _ in recorder.calls] == [[0], [1, 2]]


def test_max_rows_must_be_positive():
    with pytest.raises(ValueError):
        Batcher(Recorder(), max_rows=0)


def test_a_lone_client_never_waits_even_with_a_long_wait():
    recorder = Recorder()

    async def main():
        batcher = Batcher(recorder, max_rows=8, wait=5.0)
        started = time.monotonic()
        for i in range(5):  # one request after another: each batch ends with one row in flight
            assert await batcher.submit([i]) == [2 * i]
        return time.monotonic() - started

    assert run(main()) < 1.0


def test_after_a_batch_of_several_the_next_waits_for_their_clients_to_come_back():
    recorder = Recorder(delay=0.05)

    async def main():
        batcher = Batcher(recorder, max_rows=8, wait=1.0)

        async def client(i):
            for _ in range(3):  # each comes back after its answer, a little apart from the others
                await batcher.submit([i])
                await asyncio.sleep(0.01 * i)

        await asyncio.gather(*(client(i) for i in range(4)))
        return list(batcher.batches)

    batches = run(main())
    # the first batch takes who is there; after it, each waits for all four clients
    assert batches[-2:] == [(4, 4), (4, 4)]


@pytest.mark.parametrize("raised", [StopIteration(), SystemExit(3), KeyboardInterrupt()])
def test_what_the_engine_must_not_raise_fails_its_request_and_the_batcher_goes_on(raised):
    calls = []

    def run_rows(rows, params):
        calls.append(rows)
        if len(calls) == 1:
            raise raised
        return rows

    async def main():
        batcher = Batcher(run_rows, max_rows=4)
        with pytest.raises(RuntimeError, match=type(raised).__name__):
            await batcher.submit([1])
        return await asyncio.wait_for(batcher.submit([2]), 5)

    assert run(main()) == [2]


def test_a_lone_client_sending_fewer_rows_than_before_does_not_wait():
    recorder = Recorder()

    async def main():
        batcher = Batcher(recorder, max_rows=8, wait=5.0)
        started = time.monotonic()
        await batcher.submit([1, 2, 3, 4])
        await batcher.submit([5])
        return time.monotonic() - started

    assert run(main()) < 1.0
