"""Server settings, from the environment (MODELYARD_*), with defaults for production."""

from __future__ import annotations

import os
from dataclasses import dataclass

from modelyard import config


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    # Every interval, each worker is pinged; no answer within health_timeout marks it UNHEALTHY.
    health_interval: float = 5.0
    health_timeout: float = 10.0
    # A call that made no progress (no result, no streamed item) for this long marks its model
    # UNHEALTHY; 0 turns the check off.
    stall_timeout: float = 600.0
    # TERM, then KILL after this long, when a model is terminated.
    stop_grace: float = 5.0
    # A model's log is rotated (to <log>.1) past this size.
    log_max_bytes: int = 64 << 20

    @classmethod
    def from_env(cls) -> Settings:
        config.stream_window()  # read by every worker: a bad value stops the server now, not each launch
        return cls(
            health_interval=_seconds("MODELYARD_HEALTH_INTERVAL", cls.health_interval),
            health_timeout=_seconds("MODELYARD_HEALTH_TIMEOUT", cls.health_timeout),
            stall_timeout=_seconds("MODELYARD_STALL_TIMEOUT", cls.stall_timeout),
            stop_grace=_seconds("MODELYARD_STOP_GRACE", cls.stop_grace),
            log_max_bytes=int(_seconds("MODELYARD_LOG_MAX_BYTES", cls.log_max_bytes)),
        )
