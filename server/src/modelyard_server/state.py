"""The server's long-lived objects, built once in the app's lifespan and reached from routes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from modelyard.keys import KeyStore
from modelyard.plugins import Plugins
from modelyard.registry import Registry
from modelyard.store import Store
from modelyard_server.metrics import Metrics
from modelyard_server.supervisor import Supervisor


@dataclass
class ServerState:
    home: Path
    plugins: Plugins
    store: Store
    registry: Registry
    supervisor: Supervisor
    keys: KeyStore
    started_at: float
    metrics: Metrics | None = None  # None with MODELYARD_METRICS=0


def server_state(request: Request) -> ServerState:
    return request.app.state.modelyard
