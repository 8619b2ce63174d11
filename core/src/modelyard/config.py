"""Where modelyard keeps its state, and the defaults every component shares."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9997
DEFAULT_ENDPOINT = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def home() -> Path:
    """`MODELYARD_HOME`, default `~/.modelyard`: database, logs, virtualenvs, model cache."""
    return Path(os.environ.get("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser()


def endpoint() -> str:
    """The server a client talks to: `MODELYARD_ENDPOINT`, else the default bind address."""
    return os.environ.get("MODELYARD_ENDPOINT") or DEFAULT_ENDPOINT
