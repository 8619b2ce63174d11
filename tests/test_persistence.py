"""Persisted registrations survive a restart, even after kill -9; the others do not."""

import signal

from helpers import Server, register_flexible


def names(http):
    return {r["model_name"] for r in http.get("/v1/model_registrations/flexible").json()}


def test_persisted_registrations_survive_restarts(tmp_path):
    home = tmp_path / "home"
    srv = Server(home).start()
    with srv.http() as http:
        assert register_flexible(http, "kept", "edge_models.launcher", {"k": 1}, persist=True).status_code == 200
        assert register_flexible(http, "dropped", "edge_models.launcher", persist=False).status_code == 200
        assert register_flexible(http, "kept-then-removed", "edge_models.launcher", persist=True).status_code == 200
        assert http.delete("/v1/model_registrations/flexible/kept-then-removed").status_code == 200
        assert {"kept", "dropped"} <= names(http)
    assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught

    srv = Server(home).start()
    with srv.http() as http:
        found = names(http)
        assert "kept" in found and "dropped" not in found and "kept-then-removed" not in found
        kept = http.get("/v1/model_registrations/flexible/kept").json()
        assert kept["launcher"] == "edge_models.launcher" and kept["model_uri"] == "/path/to/model"
        # the restored registration launches as before
        uid = http.post("/v1/models", json={"model_name": "kept", "model_type": "flexible"}).json()["model_uid"]
        assert http.post("/v1/flexible/infers", json={"model": uid, "args": ["echo"]}).json()["config"] == {"k": 1}
        # acknowledged, then the server is killed without a chance to flush anything
        assert register_flexible(http, "after-kill", "edge_models.launcher", persist=True).status_code == 200
    srv.stop(signal.SIGKILL)

    srv = Server(home).start()
    with srv.http() as http:
        assert {"kept", "after-kill"} <= names(http)
        # the name is taken by the persisted registration, across restarts too
        assert register_flexible(http, "kept", "edge_models.launcher").status_code == 409
    srv.stop()
