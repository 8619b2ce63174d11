"""Operations: idle models unload and load again on demand, a model runs as several replicas,
request_limits refuses what is over its bound, and /metrics tells the operator what happened.
Real servers, real workers."""

import concurrent.futures
import os
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import Server, flexible_server, pid_alive, register_flexible, wait_until

FAST = {"MODELYARD_HEALTH_INTERVAL": "0.2", "MODELYARD_RESTART_WINDOW": "60"}


def launch(http, uid, name="ops", **kwargs):
    response = http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": uid,
                                             **kwargs})
    assert response.status_code == 200, response.text
    return http.get(f"/v1/models/{uid}").json()


def infer(http, uid, *args, **kwargs):
    return http.post("/v1/flexible/infers", json={"model": uid, "args": list(args), **kwargs})


def described(http, uid):
    return http.get(f"/v1/models/{uid}").json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = flexible_server(tmp_path_factory.mktemp("operations"), "ops", "lifecycle_models.launcher", FAST)
    yield server
    server.stop()


def test_keep_alive_unloads_an_idle_model_and_the_next_request_loads_it(srv):
    with srv.http() as http:
        pid = launch(http, "sleepy", keep_alive=2)["pid"]
        assert infer(http, "sleepy", "pid").json() == pid
        assert wait_until(lambda: described(http, "sleepy")["status"] == "UNLOADED", timeout=10)
        assert wait_until(lambda: not pid_alive(pid), timeout=10)  # its worker is gone
        assert described(http, "sleepy")["pid"] is None
        assert "sleepy" in [m["id"] for m in http.get("/v1/models").json()["data"]]  # still listed
        answer = infer(http, "sleepy", "pid")  # loads it again, then answers
        assert answer.status_code == 200, answer.text
        assert answer.json() != pid and pid_alive(answer.json())
        names = [e["event"] for e in http.get("/v1/models/sleepy/events").json()["events"]]
        assert names[-3:] == ["unloaded", "loading", "ready"]
        assert http.delete("/v1/models/sleepy").status_code == 200


def test_keep_alive_zero_unloads_after_each_request_and_bad_values_are_refused(srv):
    with srv.http() as http:
        launch(http, "once", keep_alive=0)
        first = infer(http, "once", "pid").json()
        assert wait_until(lambda: not pid_alive(first), timeout=10)
        assert described(http, "once")["status"] == "UNLOADED"
        second = infer(http, "once", "pid")
        assert second.status_code == 200 and second.json() != first
        http.delete("/v1/models/once")
        for bad in ("soon", -5, True):
            refused = http.post("/v1/models", json={"model_name": "ops", "model_type": "flexible", "keep_alive": bad})
            assert refused.status_code == 400 and "keep_alive" in refused.json()["detail"], refused.text


def test_request_limits_refuses_calls_over_its_bound_with_a_429(srv):
    with srv.http() as http:
        launch(http, "narrow", request_limits=1)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            def slow(_):
                with srv.http() as client:
                    return infer(client, "narrow", "sleep", seconds=1.5)
            answers = list(pool.map(slow, range(4)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 429, 429, 429], [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 429)
        assert "request_limits" in refused.json()["detail"] and refused.headers["Retry-After"]
        assert infer(http, "narrow", "pid").status_code == 200  # once free, it serves again
        http.delete("/v1/models/narrow")
        bad = http.post("/v1/models", json={"model_name": "ops", "model_type": "flexible", "request_limits": 0})
        assert bad.status_code == 400 and "request_limits" in bad.json()["detail"]


def test_replicas_share_the_calls_and_a_killed_one_comes_back(srv):
    with srv.http() as http:
        model = launch(http, "twins", replica=2)
        assert model["replica"] == 2 and model["status"] == "READY"
        pids = {r["pid"] for r in model["replicas"]}
        assert len(pids) == 2 and all(r["status"] == "READY" for r in model["replicas"])
        seen = {infer(http, "twins", "pid").json() for _ in range(20)}
        assert seen == pids  # both serve, one request at a time
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two at once: one each
            def busy(_):
                with srv.http() as client:
                    return infer(client, "twins", "sleep", seconds=1.0).status_code
            assert list(pool.map(busy, range(2))) == [200, 200]
        victim = model["replicas"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        # the other goes on serving while the killed one restarts
        for _ in range(10):
            answer = infer(http, "twins", "pid")
            assert answer.status_code == 200 and answer.json() != victim
        assert wait_until(lambda: all(r["status"] == "READY" and r["pid"] not in (None, victim)
                                      for r in described(http, "twins")["replicas"]), timeout=20)
        after = described(http, "twins")
        assert after["replicas"][0]["restarts"] == 1 and after["replicas"][1]["restarts"] == 0
        assert after["replicas"][1]["pid"] == model["replicas"][1]["pid"]
        assert {infer(http, "twins", "pid").json() for _ in range(10)} == {r["pid"] for r in after["replicas"]}
        logs = http.get("/v1/models/twins/logs", params={"replica": 1})
        assert logs.status_code == 200 and "lifecycle model loading" in logs.json()["lines"]
        assert http.get("/v1/models/twins/logs", params={"replica": 2}).status_code == 400
        http.delete("/v1/models/twins")
        assert wait_until(lambda: not any(pid_alive(p) for p in {r["pid"] for r in after["replicas"]}), timeout=10)
        bad = http.post("/v1/models", json={"model_name": "ops", "model_type": "flexible", "replica": 0})
        assert bad.status_code == 400 and "replica" in bad.json()["detail"]


def test_max_loaded_models_unloads_the_least_recently_used(tmp_path):
    server = Server(tmp_path, env=FAST, args=("--max-loaded-models", "1")).start()
    try:
        with server.http() as http:
            register_flexible(http, "ops", "lifecycle_models.launcher")
            first = launch(http, "older")["pid"]
            launch(http, "newer")
            assert described(http, "older")["status"] == "UNLOADED"
            assert wait_until(lambda: not pid_alive(first), timeout=10)
            assert described(http, "newer")["status"] == "READY"
            assert infer(http, "older", "pid").status_code == 200  # loads it again, unloading the other
            assert described(http, "newer")["status"] == "UNLOADED"
            assert described(http, "older")["status"] == "READY"
    finally:
        server.stop()


def test_load_on_demand_launches_a_registered_model_within_the_wait(tmp_path):
    server = Server(tmp_path, env=FAST, args=("--load-on-demand", "--load-wait", "1")).start()
    try:
        with server.http() as http:
            register_flexible(http, "quick", "lifecycle_models.launcher")
            register_flexible(http, "slow", "lifecycle_models.launcher", launcher_args={"load_seconds": 4})
            answer = infer(http, "quick", "pid")  # not running: launched for the request
            assert answer.status_code == 200, answer.text
            assert described(http, "quick")["pid"] == answer.json()
            late = infer(http, "slow", "pid")  # loads for longer than --load-wait
            assert late.status_code == 503 and late.headers["Retry-After"], late.text
            assert "still loading" in late.json()["detail"]
            assert wait_until(lambda: described(http, "slow")["status"] == "READY", timeout=20)
            assert infer(http, "slow", "pid").status_code == 200
            unknown = infer(http, "nobody", "pid")
            assert unknown.status_code == 404 and "registered" in unknown.json()["detail"]
    finally:
        server.stop()


def test_without_load_on_demand_a_registered_model_is_not_launched(srv):
    with srv.http() as http:
        answer = infer(http, "ops", "pid")
        assert answer.status_code == 404
        assert "ops" not in [m["id"] for m in http.get("/v1/models").json()["data"]]


def metric_samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_known_traffic_and_parse(srv):
    route = "/v1/flexible/infers"
    with srv.http() as http:
        before = metric_samples(http.get("/metrics").text)  # the module's other tests' traffic
        launch(http, "counted")
        for _ in range(3):
            assert infer(http, "counted", "pid").status_code == 200
        assert infer(http, "counted", "nonsense").status_code == 500  # the model's own code raised
        assert infer(http, "not-a-model", "pid").status_code == 404
        response = http.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        samples = metric_samples(response.text)

        def value(name, **labels):
            return samples.get((name, tuple(sorted(labels.items()))))

        def added(name, **labels):
            key = (name, tuple(sorted(labels.items())))
            return samples.get(key, 0) - before.get(key, 0)

        assert value("modelyard_requests_total", route=route, model="counted", status="2xx") == 3
        assert value("modelyard_requests_total", route=route, model="counted", status="5xx") == 1
        # an unknown uid is never a label value: labels stay bounded
        assert added("modelyard_requests_total", route=route, model="", status="4xx") == 1
        assert not any("not-a-model" in str(key) for key in samples)
        assert value("modelyard_request_duration_seconds_count", route=route, model="counted") == 4
        assert value("modelyard_model_state", model="counted", status="READY") == 1
        assert value("modelyard_model_state", model="counted", status="FAILED") == 0
        assert value("modelyard_model_replicas_ready", model="counted") == 1
        assert value("modelyard_model_requests_in_flight", model="counted") == 0
        assert value("modelyard_model_loads_total", model="counted") == 1
        assert value("modelyard_model_load_seconds", model="counted") > 0
        assert value("modelyard_worker_rss_bytes", model="counted", replica="0") > 1 << 20
        assert value("modelyard_requests_total", route="/v1/models/{model_uid}", model="counted", status="2xx") >= 1
        http.delete("/v1/models/counted")


def test_metrics_need_a_key_unless_public(tmp_path):
    admin = "sk-admin-" + "m" * 24
    locked = Server(tmp_path / "locked", env={"MODELYARD_ADMIN_KEY": admin}, api_key=admin).start()
    try:
        assert httpx.get(f"{locked.url}/metrics").status_code == 401
        with locked.http() as http:
            assert http.get("/metrics").status_code == 200
    finally:
        locked.stop()
    public = Server(tmp_path / "public", env={"MODELYARD_ADMIN_KEY": admin}, api_key=admin,
                    args=("--metrics-public",)).start()
    try:
        answer = httpx.get(f"{public.url}/metrics")
        assert answer.status_code == 200 and "modelyard_requests_total" in answer.text
    finally:
        public.stop()
    off = Server(tmp_path / "off", env={"MODELYARD_METRICS": "0"}).start()
    try:
        with off.http() as http:
            assert http.get("/metrics").status_code == 404
    finally:
        off.stop()
