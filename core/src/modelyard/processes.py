"""A process's descendants and the cores its threads run on, read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def name(pid: int) -> str:
    """The process's name (its `comm`, which a process may set itself), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def pin_threads(pid: int, cores: set[int]) -> None:
    """Every thread of `pid` on `cores`: a process's affinity is its threads', one by one, and the
    threads it starts later take their starter's."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            os.sched_setaffinity(int(task.name), cores)
        except (OSError, ValueError):
            pass  # the thread has ended
