"""The FastAPI app factory."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from modelyard import config
from modelyard.keys import KeyStore
from modelyard.plugins import get_plugins
from modelyard.registry import Registry
from modelyard.store import Store
from modelyard.venv import Virtualenvs
from modelyard_server import __version__
from modelyard_server.auth import Authentication
from modelyard_server.errors import install_error_handlers
from modelyard_server.guard import RequestGuard, is_loopback, machine_names
from modelyard_server.launches import LaunchLog
from modelyard_server.local_backend import LocalProcessBackend
from modelyard_server.metrics import Metrics, MetricsMiddleware
from modelyard_server.plugin_routes import mount_plugin_routes
from modelyard_server.routes import (
    api_keys,
    engines,
    flexible,
    models,
    openai_chat,
    openai_completions,
    openai_embeddings,
    registrations,
    rerank,
    status,
    virtualenvs,
)
from modelyard_server.routes import metrics as metrics_routes
from modelyard_server.settings import Settings
from modelyard_server.state import ServerState
from modelyard_server.supervisor import Supervisor

log = logging.getLogger(__name__)

# Last-used times of keys are kept in memory and written this often (and at shutdown).
KEY_USE_FLUSH_SECONDS = 30.0


def create_app(home: Path | None = None, settings: Settings | None = None, spares: list | None = None) -> FastAPI:
    """`spares`: workers started for the restore before the app was (serve.spares_for_restore)."""
    home = home or config.home()
    settings = settings or Settings.from_env()
    authentication = Authentication()
    metrics = Metrics(lambda: app.state.modelyard.supervisor.models.values()) if settings.metrics else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        home.mkdir(parents=True, exist_ok=True)
        plugins = get_plugins()
        store = Store(home / "modelyard.db")
        keys = open_keys(store)
        registry = Registry(plugins, store,
                            check=lambda registration, key: settings.gates.check_registration(registration, plugins,
                                                                                               key))
        backend = LocalProcessBackend(home, settings.log_max_bytes, settings.log_backups, spares)
        supervisor = Supervisor(plugins, registry, backend, Virtualenvs(config.venv_dir(home)), LaunchLog(store),
                                settings)
        supervisor.start()
        # in the background: the server answers (models LAUNCHING) while they load
        restoring = asyncio.get_running_loop().create_task(supervisor.restore(keys)) if settings.restore else None
        authentication.keys = keys
        flusher = asyncio.get_running_loop().create_task(_flush_key_uses(keys))
        announce_mode(settings, keys.enabled)
        app.state.modelyard = ServerState(home, plugins, store, registry, supervisor, keys, time.time(), metrics)
        try:
            yield
        finally:
            flusher.cancel()
            if restoring is not None:
                restoring.cancel()
            await supervisor.shutdown()
            keys.flush_uses()
            store.close()

    app = FastAPI(title="modelyard", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    # Inference routes first: the router tries routes in order, and they carry the traffic.
    for module in (openai_chat, openai_completions, openai_embeddings, rerank, flexible, models, registrations, engines,
                   status, virtualenvs, api_keys):
        app.include_router(module.router)
    if metrics is not None:
        app.include_router(metrics_routes.router(settings.metrics_public))
    uploads = mount_plugin_routes(app, get_plugins())
    app.add_middleware(RequestGuard, bind_host=settings.bind_host, allowed_hosts=settings.allowed_hosts,
                       cors_origins=settings.cors_origins, authentication=authentication,
                       max_body_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes,
                       upload_paths=uploads)
    if metrics is not None:  # outermost: requests the guard refuses are counted too
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def open_keys(store: Store) -> KeyStore:
    """The state's keys, with MODELYARD_ADMIN_KEY made (or confirmed) an admin key."""
    keys = KeyStore(store)
    admin = os.environ.get("MODELYARD_ADMIN_KEY")
    if admin:
        keys.ensure_admin(admin)
    return keys


async def _flush_key_uses(keys: KeyStore) -> None:
    while True:
        await asyncio.sleep(KEY_USE_FLUSH_SECONDS)
        await asyncio.to_thread(keys.flush_uses)


def check_before_serving(home: Path, settings: Settings) -> Settings:
    """Refuse to serve beyond loopback without keys; with keys on, answer to the machine's own names."""
    store = Store(home / "modelyard.db")
    try:
        keys_on = open_keys(store).enabled
    finally:
        store.close()
    if not keys_on and not is_loopback(settings.bind_host) and not settings.insecure_no_auth:
        raise SystemExit(
            f"modelyard will not serve on {settings.bind_host} without API keys: anyone who can reach that address "
            "could run code on this machine. Make an admin key first (`modelyard keys create --scope admin`, which "
            f"writes to {home} while no server runs, or set MODELYARD_ADMIN_KEY), then start again; use TLS "
            "(--ssl-certfile/--ssl-keyfile) or a proxy beyond loopback. --insecure-no-auth serves without keys.")
    if keys_on and not settings.allowed_hosts:
        return dataclasses.replace(settings, allowed_hosts=tuple(sorted(machine_names())))
    return settings


def announce_mode(settings: Settings, keys_on: bool) -> None:
    """Say at start whom the server trusts."""
    if keys_on:
        log.info("API keys are on: every route but /status, /v1/cluster/auth and the API docs needs one.")
    elif is_loopback(settings.bind_host):
        log.warning("modelyard is bound to %s without API keys: it trusts every user and program on this machine "
                    "(pages in a browser cannot reach it: foreign Host and Origin headers are refused). "
                    "`modelyard keys create --scope admin` turns keys on.", settings.bind_host)
    else:
        log.warning("modelyard is bound to %s WITHOUT API KEYS (--insecure-no-auth): anyone who can reach this "
                    "address can launch models and run code on this machine.", settings.bind_host)
