"""Run the server with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelyard import config

# Seconds uvicorn waits for open requests (streams included) before it stops anyway.
GRACEFUL_SHUTDOWN_SECONDS = 5


def run(host: str = config.DEFAULT_HOST, port: int = config.DEFAULT_PORT, log_level: str = "info",
        access_log: bool = False, *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
        **options: Any) -> None:
    """`options`: the settings `modelyard serve` sets (Settings.from_env's keywords)."""
    from modelyard_server.settings import Settings

    settings = Settings.from_env(bind_host=host, **options)
    home = config.home()
    # before the app's import, which takes most of a second: the restored models' workers start meanwhile
    spares = spares_for_restore(home) if settings.restore else []
    import uvicorn

    from modelyard_server.app import check_before_serving, create_app

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = check_before_serving(home, settings)
    uvicorn.run(create_app(home, settings, spares), host=host, port=port, loop=loop, http="httptools",
                log_level=log_level, access_log=access_log, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)


def spares_for_restore(home: Path) -> list:
    """A spare worker (local_backend.start_spares) for each replica the restore will start that
    could take one: of the server's Python, with no variables of its own. One that goes to a
    virtualenv's launch is ended when the restore is done."""
    from modelyard.store import Store
    from modelyard_server.launches import LaunchLog
    from modelyard_server.local_backend import start_spares

    if not (home / "modelyard.db").exists():
        return []
    store = Store(home / "modelyard.db")
    try:
        bodies = [body for _, body, _, _ in LaunchLog(store).restorable()]
    finally:
        store.close()
    count = sum(body["replica"] if isinstance(body.get("replica"), int) else 1 for body in bodies
                if not body.get("envs"))
    return start_spares(count)
