"""One handler shapes every error: ours, FastAPI's, Starlette's, and bugs."""

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from modelyard.errors import Conflict, Unavailable
from modelyard_server.errors import install_error_handlers


class Body(BaseModel):
    count: int
    name: str


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/conflict")
    async def conflict():
        raise Conflict("already there")

    @app.get("/unavailable")
    async def unavailable():
        raise Unavailable("worker died")

    @app.get("/bug")
    async def bug():
        raise KeyError("oops")

    @app.post("/body")
    async def body(b: Body):
        return b

    return app


client = TestClient(make_app(), raise_server_exceptions=False)


def test_our_errors_keep_status_and_type():
    response = client.get("/conflict")
    assert response.status_code == 409
    assert response.json() == {"detail": "already there", "error": {
        "message": "already there", "type": "conflict_error", "param": None, "code": 409}}
    assert client.get("/unavailable").json()["error"]["type"] == "service_unavailable"


def test_validation_errors_name_every_field():
    response = client.post("/body", json={"count": "many"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "count: Input should be a valid integer" in detail and "name: Field required" in detail
    assert response.json()["error"]["param"] == "count"


def test_non_json_body_is_400():
    response = client.post("/body", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


def test_bugs_are_500_with_the_same_shape():
    response = client.get("/bug")
    assert response.status_code == 500
    assert response.json()["detail"] == "Internal server error: KeyError: 'oops'"
    assert response.json()["error"]["type"] == "internal_error"
