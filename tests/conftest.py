import uuid

import pytest

from helpers import Server

collect_ignore = ["plugins"]  # packages of their own: tests/test_third_party_engine.py runs their tests


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One server shared by the end-to-end tests that leave it as they found it."""
    srv = Server(tmp_path_factory.mktemp("home"), args=("--allow-launcher", "my_flexible_model.*")).start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server):
    with server.http() as client:
        yield client


@pytest.fixture
def unique():
    """A fresh model name per test, so tests sharing a server never collide."""
    return lambda prefix="m": f"{prefix}-{uuid.uuid4().hex[:8]}"
