"""Server settings, from the environment (MODELYARD_*) and `modelyard serve`'s options, with
defaults for production."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from modelyard import config
from modelyard_server.gates import Gates, comma_list


def _number(name: str, default: float, unit: str = "seconds") -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise SystemExit(f"{name} must be a number of {unit} (0 or more), got {raw!r}")
    return value


def _seconds(name: str, default: float) -> float:
    return _number(name, default)


@dataclass(frozen=True)
class Settings:
    # Every interval, each worker is pinged; no answer within health_timeout marks it UNHEALTHY.
    health_interval: float = 5.0
    health_timeout: float = 10.0
    # A call that made no progress (no result, no streamed item) for this long marks its model
    # UNHEALTHY; 0 turns the check off.
    stall_timeout: float = 600.0
    # A model that has not loaded this long after its worker started fails its launch.
    launch_timeout: float = 1800.0
    # TERM, then KILL after this long, when a model is terminated.
    stop_grace: float = 5.0
    # A model's log is rotated (renamed to <log>.1, the older ones shifted) past this size, and
    # this many rotated files are kept.
    log_max_bytes: int = 64 << 20
    log_backups: int = 5
    # What requests may make run on this machine (gates.py).
    gates: Gates = field(default_factory=Gates)
    # The address the server is bound to, and the other names (`--allowed-hosts`) a request's
    # Host header may carry; loopback names always may.
    bind_host: str = config.DEFAULT_HOST
    allowed_hosts: tuple[str, ...] = ()
    # Origins whose pages may call the server (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # The largest request body of a JSON route and of an upload (multipart) route.
    max_body_bytes: int = 16 << 20
    max_upload_bytes: int = 25 << 20
    # Serve beyond loopback without keys (`--insecure-no-auth`).
    insecure_no_auth: bool = False
    # Launch again, at start, the models that were running when the server last stopped (`--no-restore`: not).
    restore: bool = True
    # A worker that dies is started again at most restart_max times within restart_window seconds.
    restart_max: int = 5
    restart_window: float = 300.0
    # A model idle this long is unloaded (-1: never, 0: after each request); per launch `keep_alive`.
    keep_alive: float = -1.0
    # A request for a model that is loading waits this long for it, then gets a 503 with Retry-After.
    load_wait: float = 120.0
    # A request naming a registered or builtin model that is not running launches it.
    load_on_demand: bool = False
    # At most this many models loaded at once (0: no limit): the least recently used idle one is unloaded.
    max_loaded_models: int = 0
    # /metrics: whether it is kept at all, and whether it needs no key.
    metrics: bool = True
    metrics_public: bool = False

    @classmethod
    def from_env(cls, *, bind_host: str = config.DEFAULT_HOST, allow_launchers: Iterable[str] = (),
                 allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = (),
                 insecure_no_auth: bool = False, restore: bool = True, keep_alive: str | None = None,
                 load_wait: float | None = None, load_on_demand: bool = False, max_loaded_models: int | None = None,
                 metrics_public: bool = False) -> Settings:
        """The environment's settings, plus what `modelyard serve`'s options add."""
        config.stream_window()  # read by every worker: a bad value stops the server now, not each launch
        return cls(
            health_interval=_seconds("MODELYARD_HEALTH_INTERVAL", cls.health_interval),
            health_timeout=_seconds("MODELYARD_HEALTH_TIMEOUT", cls.health_timeout),
            stall_timeout=_seconds("MODELYARD_STALL_TIMEOUT", cls.stall_timeout),
            stop_grace=_seconds("MODELYARD_STOP_GRACE", cls.stop_grace),
            launch_timeout=_seconds("MODELYARD_LAUNCH_TIMEOUT", cls.launch_timeout),
            log_max_bytes=int(_number("MODELYARD_LOG_MAX_BYTES", cls.log_max_bytes, "bytes")),
            log_backups=int(_number("MODELYARD_LOG_BACKUPS", cls.log_backups, "files")),
            gates=Gates.from_env(allow_launchers=allow_launchers),
            bind_host=bind_host,
            allowed_hosts=comma_list(os.environ.get("MODELYARD_ALLOWED_HOSTS")) + _split(allowed_hosts),
            cors_origins=comma_list(os.environ.get("MODELYARD_CORS_ORIGINS")) + _split(cors_origins),
            insecure_no_auth=insecure_no_auth,
            restore=restore,
            restart_max=int(_number("MODELYARD_RESTART_MAX", cls.restart_max, "restarts")),
            restart_window=_seconds("MODELYARD_RESTART_WINDOW", cls.restart_window),
            keep_alive=_keep_alive(keep_alive if keep_alive is not None else os.environ.get("MODELYARD_KEEP_ALIVE")),
            load_wait=load_wait if load_wait is not None else _seconds("MODELYARD_LOAD_WAIT", cls.load_wait),
            load_on_demand=load_on_demand or config.truthy(os.environ.get("MODELYARD_LOAD_ON_DEMAND")),
            max_loaded_models=max_loaded_models if max_loaded_models is not None else int(
                _number("MODELYARD_MAX_LOADED_MODELS", cls.max_loaded_models, "models")),
            metrics=os.environ.get("MODELYARD_METRICS", "1").strip().lower() not in ("0", "false", "no", "off"),
            metrics_public=metrics_public or config.truthy(os.environ.get("MODELYARD_METRICS_PUBLIC")),
            max_body_bytes=_mebibytes("MODELYARD_MAX_BODY_MB", cls.max_body_bytes),
            max_upload_bytes=_mebibytes("MODELYARD_MAX_UPLOAD_MB", cls.max_upload_bytes),
        )


def _keep_alive(value: str | None) -> float:
    if not value:
        return Settings.keep_alive
    from modelyard_server.supervisor import parse_keep_alive

    try:
        return parse_keep_alive(value.strip())
    except Exception as exc:
        raise SystemExit(f"MODELYARD_KEEP_ALIVE / --keep-alive: {exc}") from None


def _mebibytes(name: str, default: int) -> int:
    return int(_number(name, default / 2**20, "MiB") * 2**20) or default


def _split(values: Iterable[str]) -> tuple[str, ...]:
    """Repeated options, each of which may itself be a comma-separated list."""
    return tuple(part for value in values for part in comma_list(value))
