"""A worker's output, kept whole and bounded: its stdout and stderr (native writes and child
processes included) go into a pipe that a thread of the server drains into the model's log file.

The pipe is always drained, so a chatty model never blocks on it. The file is rotated by rename
(`<uid>.log` -> `<uid>.log.1` -> ... -> `<uid>.log.N`, the oldest dropped), never by copying and
truncating, so no line is lost and the server's event loop never waits on it. A rotation
happens before a write that would pass the limit, after the last whole line of that write, so a
file passes the limit by less than one write and no line is split between two files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

READ_BYTES = 64 << 10
PIPE_BYTES = 1 << 20  # a larger pipe: the worker waits less while the writer is between reads


def backup(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def remove_log(path: Path, backups: int) -> None:
    """A log and its backups (a new launch under the same uid starts a fresh log)."""
    for n in range(backups + 1):
        (backup(path, n) if n else path).unlink(missing_ok=True)


def rotate(path: Path, backups: int) -> None:
    if backups <= 0:
        path.unlink(missing_ok=True)
        return
    backup(path, backups).unlink(missing_ok=True)
    for n in range(backups - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.rename(backup(path, n), backup(path, n + 1))
    os.rename(path, backup(path, 1))


def open_pipe() -> tuple[int, int]:
    """The read and write ends of a worker's output pipe."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return read_end, write_end


class LogWriter:
    """Drains `fd` (the pipe's read end) into `path` until every writer has closed the pipe."""

    def __init__(self, fd: int, path: Path, max_bytes: int, backups: int):
        self.fd = fd
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.thread = threading.Thread(target=self._run, name=f"log-{path.stem}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        log = open(self.path, "ab", buffering=0)
        size = log.tell()
        try:
            while True:
                try:
                    data = os.read(self.fd, READ_BYTES)
                except InterruptedError:
                    continue
                if not data:
                    return  # every writer (the worker and its children) has gone
                if size and size + len(data) > self.max_bytes:
                    cut = data.rfind(b"\n") + 1  # the whole lines of this write end the old file
                    if cut:
                        log.write(data[:cut])
                        data = data[cut:]
                    log.close()
                    rotate(self.path, self.backups)
                    log = open(self.path, "ab", buffering=0)
                    size = 0
                if data:
                    log.write(data)
                    size += len(data)
        except OSError:
            # the disk is full or the folder went away: keep draining, so the worker never blocks
            while os.read(self.fd, READ_BYTES):
                pass
        finally:
            log.close()
            os.close(self.fd)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
