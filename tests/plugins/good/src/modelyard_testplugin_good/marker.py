"""Stands for a heavy ML library: importing it records which process did, in $MODELYARD_TEST_MARKER."""

import os

path = os.environ.get("MODELYARD_TEST_MARKER")
if path:
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
