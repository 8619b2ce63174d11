"""The server's end of a worker's link, on its own: a worker whose link has closed (it is dying) but
whose exit has not been handled yet refuses calls with WorkerGone (a 503), under asyncio and uvloop
alike. A real process and a real socket stand in for the worker: nothing is written to it."""

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest

from modelyard_server.local_backend import LocalWorker, WorkerGone
from modelyard_server.worker_log import LogWriter

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(sys.platform == "win32", reason="no uvloop"))]


def run(loop: str, main):
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


async def dying_worker(tmp_path) -> tuple[LocalWorker, socket.socket]:
    """A LocalWorker on a live process, with the worker's end of the link still open."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    read_end, write_end = os.pipe()
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=write_end,
                               stderr=subprocess.STDOUT, start_new_session=True)
    os.close(write_end)
    log_path = tmp_path / "worker.log"
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    worker = LocalWorker("m", process, reader, writer, log_path, LogWriter(read_end, log_path, 1 << 20, 1),
                         on_progress=lambda *_: None)
    return worker, theirs


@pytest.mark.parametrize("loop", LOOPS)
def test_a_call_to_a_worker_whose_link_closed_before_its_exit_is_handled_is_worker_gone(tmp_path, loop):
    async def main():
        worker, theirs = await dying_worker(tmp_path)
        try:
            assert worker.reachable
            theirs.close()  # the worker's end goes as it dies; the process lives on a moment
            for _ in range(100):
                if not worker.reachable:
                    break
                await asyncio.sleep(0.01)
            assert not worker.reachable and not worker.exited.done()
            with pytest.raises(WorkerGone, match="link to its worker process .* has closed"):
                await asyncio.wait_for(worker.call("infer", [], {}), 5)
            with pytest.raises(WorkerGone):
                stream = worker.stream("infer", [], {})
                await asyncio.wait_for(anext(stream), 5)
            with pytest.raises(WorkerGone):
                await worker.ping(5)
            assert worker.pending == {}  # nothing waits for an answer that cannot come
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            assert await asyncio.wait_for(worker.exited, 10) == -signal.SIGKILL
            assert "exited with code -9 while loading" in str(worker.ready.exception())

    run(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_call_in_flight_when_the_link_closes_fails_with_worker_gone_at_the_exit(tmp_path, loop):
    async def main():
        worker, theirs = await dying_worker(tmp_path)
        call = asyncio.ensure_future(worker.call("infer", [], {}))
        await asyncio.sleep(0.05)
        assert not call.done()  # sent: it waits for the worker's answer
        theirs.close()
        os.killpg(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerGone, match="exited with code -9"):
            await asyncio.wait_for(call, 10)
        assert "exited with code -9 while loading" in str(worker.ready.exception())

    run(loop, main)
