"""Run the server with uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from modelyard import config

# Seconds uvicorn waits for open requests (streams included) before it stops anyway.
GRACEFUL_SHUTDOWN_SECONDS = 5


def run(host: str = config.DEFAULT_HOST, port: int = config.DEFAULT_PORT, log_level: str = "info",
        access_log: bool = False, *, allow_launchers: Iterable[str] = (), allowed_hosts: Iterable[str] = (),
        cors_origins: Iterable[str] = (), insecure_no_auth: bool = False, ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None, restore: bool = True) -> None:
    import uvicorn

    from modelyard_server.app import check_before_serving, create_app
    from modelyard_server.settings import Settings

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(bind_host=host, allow_launchers=allow_launchers, allowed_hosts=allowed_hosts,
                                 cors_origins=cors_origins, insecure_no_auth=insecure_no_auth, restore=restore)
    home = config.home()
    settings = check_before_serving(home, settings)
    uvicorn.run(create_app(home, settings), host=host, port=port, loop=loop, http="httptools", log_level=log_level,
                access_log=access_log, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
