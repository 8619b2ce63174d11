"""Where modelyard keeps its state, and the defaults every component shares."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9997
DEFAULT_ENDPOINT = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
# Variables that hold keys: the server reads them, and no worker ever inherits them.
SECRET_VARIABLES = frozenset({"MODELYARD_ADMIN_KEY", "MODELYARD_API_KEY"})


def torch_threads(given: object = None) -> int | None:
    """The threads torch uses for a model: its launch option `torch_threads` (`given`), else
    `MODELYARD_TORCH_THREADS`; None leaves torch's default."""
    value = given or os.environ.get("MODELYARD_TORCH_THREADS")
    return int(value) if value else None  # type: ignore[arg-type]


def truthy(value: str | None) -> bool:
    """Whether a setting's text says yes: 1, true, yes or on."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def omp_threads_from_env() -> None:
    """Call before torch loads: OpenMP reads its thread count per thread, from the environment,
    when torch loads, so `MODELYARD_TORCH_THREADS` becomes the count every thread sees."""
    if os.environ.get("MODELYARD_TORCH_THREADS"):
        os.environ.setdefault("OMP_NUM_THREADS", os.environ["MODELYARD_TORCH_THREADS"])


def home() -> Path:
    """`MODELYARD_HOME`, default `~/.modelyard`: database, logs, virtualenvs, model cache."""
    return Path(os.environ.get("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser()


def venv_dir(home_dir: Path | None = None) -> Path:
    """`MODELYARD_VENV_DIR`, default `<home>/virtualenvs`: the models' envs. Outside the home, many
    homes (the tests' temporary ones) share envs that are slow to build."""
    given = os.environ.get("MODELYARD_VENV_DIR")
    return Path(given).expanduser() if given else (home_dir or home()) / "virtualenvs"


def endpoint() -> str:
    """The server a client talks to: `MODELYARD_ENDPOINT`, else the default bind address."""
    return os.environ.get("MODELYARD_ENDPOINT") or DEFAULT_ENDPOINT


def api_key() -> str | None:
    """The key clients send: `MODELYARD_API_KEY`."""
    return os.environ.get("MODELYARD_API_KEY") or None


def stream_window() -> float:
    """`MODELYARD_STREAM_FLUSH_MS` (default 10) in seconds: the longest a streamed item may wait to be
    handed on together with the items that follow it. Grouping a fast stream's items saves a wake-up
    of the next thread or process per item, which on a small machine slows the model itself; 10 ms
    is below one frame of a 60 Hz display, so nobody watching a stream sees the grouping. 0 hands
    on every item alone."""
    raw = os.environ.get("MODELYARD_STREAM_FLUSH_MS") or "10"
    try:
        milliseconds = float(raw)
    except ValueError:
        milliseconds = -1
    if not milliseconds >= 0:
        raise SystemExit(f"MODELYARD_STREAM_FLUSH_MS must be a number of milliseconds (0 or more), got {raw!r}")
    return milliseconds / 1000
