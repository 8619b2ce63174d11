"""modelyard.processes on a real process tree: a child with threads, and its own child."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelyard.processes import name, pin_threads, process_tree

CHILD = r"""
import subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(grandchild.pid, flush=True)
sys.stdin.readline()  # then a thread started after the pinning
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("started", flush=True)
sys.stdin.readline()
grandchild.kill()
"""


def threads(pid: int) -> list[int]:
    return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_tree_is_found_and_every_thread_of_a_process_is_pinned():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        tree = process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree and grandchild in tree
        assert name(child.pid).startswith("python") and name(2**22 + 12345) == ""
        core = max(os.sched_getaffinity(0))
        before = len(threads(child.pid))
        assert before >= 2
        pin_threads(child.pid, {core})
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 5
        while len(threads(child.pid)) <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(threads(child.pid)) > before
        assert all(os.sched_getaffinity(t) == {core} for t in threads(child.pid))
        assert os.sched_getaffinity(grandchild) == os.sched_getaffinity(0)  # only the process named
    finally:
        child.stdin.close()
        child.wait(10)
