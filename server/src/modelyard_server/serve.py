"""Run the server with uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from modelyard import config

# Seconds uvicorn waits for open requests (streams included) before it stops anyway.
GRACEFUL_SHUTDOWN_SECONDS = 5


def run(host: str = config.DEFAULT_HOST, port: int = config.DEFAULT_PORT, log_level: str = "info",
        access_log: bool = False, *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
        **options: Any) -> None:
    """`options`: the settings `modelyard serve` sets (Settings.from_env's keywords)."""
    import uvicorn

    from modelyard_server.app import check_before_serving, create_app
    from modelyard_server.settings import Settings

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(bind_host=host, **options)
    home = config.home()
    settings = check_before_serving(home, settings)
    uvicorn.run(create_app(home, settings), host=host, port=port, loop=loop, http="httptools", log_level=log_level,
                access_log=access_log, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
