"""The FastAPI app factory."""

from __future__ import annotations

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


def create_app(home: Path | None = None) -> FastAPI:
    home = home or config.home()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        home.mkdir(parents=True, exist_ok=True)
        plugins = get_plugins()
        store = Store(home / "modelyard.db")
        registry = Registry(plugins, store)
        supervisor = Supervisor(plugins, registry, LocalProcessBackend(home), Virtualenvs(home / "virtualenvs"),
                                Settings.from_env())
        supervisor.start()
        app.state.modelyard = ServerState(home, plugins, store, registry, supervisor, time.time())
        try:
            yield
        finally:
            await supervisor.shutdown()
            store.close()

    app = FastAPI(title="modelyard", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    # Inference routes first: the router tries routes in order, and they carry the traffic.
    for module in (openai_chat, openai_completions, flexible, models, registrations, engines, status, virtualenvs):
        app.include_router(module.router)
    return app
