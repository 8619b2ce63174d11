"""The FastAPI app factory."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from modelyard import config
from modelyard.plugins import get_plugins
from modelyard.registry import Registry
from modelyard.store import Store
from modelyard.venv import Virtualenvs
from modelyard_server import __version__
from modelyard_server.errors import install_error_handlers
from modelyard_server.guard import RequestGuard, is_loopback
from modelyard_server.local_backend import LocalProcessBackend
from modelyard_server.routes import (
    engines,
    flexible,
    models,
    openai_chat,
    openai_completions,
    registrations,
    status,
    virtualenvs,
)
from modelyard_server.settings import Settings
from modelyard_server.state import ServerState
from modelyard_server.supervisor import Supervisor

log = logging.getLogger(__name__)


def create_app(home: Path | None = None, settings: Settings | None = None) -> FastAPI:
    home = home or config.home()
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        home.mkdir(parents=True, exist_ok=True)
        plugins = get_plugins()
        store = Store(home / "modelyard.db")
        registry = Registry(plugins, store,
                            check=lambda registration: settings.gates.check_registration(registration, plugins))
        supervisor = Supervisor(plugins, registry, LocalProcessBackend(home), Virtualenvs(home / "virtualenvs"),
                                settings)
        supervisor.start()
        announce_mode(settings)
        app.state.modelyard = ServerState(home, plugins, store, registry, supervisor, time.time())
        try:
            yield
        finally:
            await supervisor.shutdown()
            store.close()

    app = FastAPI(title="modelyard", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestGuard, bind_host=settings.bind_host, allowed_hosts=settings.allowed_hosts,
                       cors_origins=settings.cors_origins)
    # Inference routes first: the router tries routes in order, and they carry the traffic.
    for module in (openai_chat, openai_completions, flexible, models, registrations, engines, status, virtualenvs):
        app.include_router(module.router)
    return app


def announce_mode(settings: Settings) -> None:
    """Say at start whom the server trusts."""
    if is_loopback(settings.bind_host):
        log.warning("modelyard is bound to %s without API keys: it trusts every user and program on this machine. "
                    "Pages in a browser cannot reach it (foreign Host and Origin headers are refused).",
                    settings.bind_host)
    else:
        log.warning("modelyard is bound to %s without API keys: anyone who can reach this address can launch "
                    "models and call them. Bind to 127.0.0.1, or put an authenticating proxy in front.",
                    settings.bind_host)
