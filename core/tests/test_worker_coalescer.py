"""The worker's grouping of a stream's frames into socket writes."""

import asyncio
import time

from modelyard.worker import protocol as p
from modelyard.worker.main import _Coalescer


class RecordingSocket:
    """Stands in for the worker's socket: records each write and when it happened."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, bytes]] = []

    def send(self, data) -> int:
        self.writes.append((time.monotonic(), bytes(data)))
        return len(data)


def run_in_thread(produce, window: float = 0.05) -> RecordingSocket:
    """Run `produce(coalescer)` in a thread, the way a streaming model's thread adds frames, while
    the event loop serves the coalescer's timers; then wait long enough for every flush."""
    async def main() -> RecordingSocket:
        sock = RecordingSocket()
        coalescer = _Coalescer(p.Sender(sock), asyncio.get_running_loop(), window=window)
        await asyncio.to_thread(produce, coalescer)
        await asyncio.sleep(window * 3)
        return sock
    return asyncio.run(main())


def test_frames_in_quick_succession_share_one_write_that_waits_at_most_the_window():
    added = []

    def produce(coalescer):
        for i in range(5):
            added.append(time.monotonic())
            coalescer.add(b"%d" % i)

    writes = run_in_thread(produce).writes
    assert [data for _, data in writes] == [b"0", b"1234"]  # the first alone: the stream was quiet
    assert writes[1][0] - added[1] < 0.05 + 0.04  # the window, plus scheduling slack


def test_frames_after_a_quiet_half_window_go_out_at_once():
    added = []

    def produce(coalescer):
        for i in range(3):
            added.append(time.monotonic())
            coalescer.add(b"%d" % i)
            time.sleep(0.06)  # more than half the window, less than all of it

    writes = run_in_thread(produce, window=0.1).writes
    assert [data for _, data in writes] == [b"0", b"1", b"2"]
    # written from within add(), not by the timer (which would be 40 ms late)
    assert all(written - at < 0.02 for (written, _), at in zip(writes, added, strict=True))


def test_a_steady_fast_stream_is_written_about_once_per_window():
    elapsed = []

    def produce(coalescer):
        started = time.monotonic()
        for _ in range(60):
            coalescer.add(b"x")
            time.sleep(0.005)  # 0.3 s of frames, about 10 per window
        elapsed.append(time.monotonic() - started)

    writes = run_in_thread(produce).writes
    assert b"".join(data for _, data in writes) == b"x" * 60
    assert 3 <= len(writes) <= elapsed[0] / 0.05 + 2



def test_streams_on_the_loop_share_one_write_per_turn_of_the_loop():
    """An async engine's streams (vLLM's: one step's items for every request) each add a frame in
    the same turn of the loop: they go out together in one write once that turn ends, in order."""
    async def main() -> RecordingSocket:
        sock = RecordingSocket()
        sender = p.Sender(sock)
        loop = asyncio.get_running_loop()
        streams = [_Coalescer(sender, loop, window=0.05) for _ in range(3)]

        async def step(i: int, stream: _Coalescer) -> None:
            stream.add(b"s%d" % i)

        await asyncio.gather(*(step(i, s) for i, s in enumerate(streams)))
        await asyncio.sleep(0.1)  # past every window: nothing more is written
        return sock

    assert [data for _, data in asyncio.run(main()).writes] == [b"s0s1s2"]


def test_a_message_sent_at_once_goes_after_what_was_posted_before_it():
    """A stream's end or error is sent directly: its items posted before it still arrive first."""
    async def main() -> RecordingSocket:
        sock = RecordingSocket()
        sender = p.Sender(sock)
        stream = _Coalescer(sender, asyncio.get_running_loop(), window=0.05)
        stream.add(b"item")
        sender.send_bytes(b"error")
        await asyncio.sleep(0.01)  # the posted flush finds nothing left
        return sock

    assert [data for _, data in asyncio.run(main()).writes] == [b"itemerror"]


def test_a_streaming_thread_writes_its_frames_itself():
    sock = RecordingSocket()

    async def main() -> None:
        coalescer = _Coalescer(p.Sender(sock), asyncio.get_running_loop(), window=0.05)
        await asyncio.to_thread(coalescer.add, b"x")
        assert [data for _, data in sock.writes] == [b"x"]  # from the thread, with no turn of the loop between

    asyncio.run(main())
