"""Models survive restarts and crashes, and say what happened to them: a killed worker is started
again (with a bound), a restarted server launches its models again (after `kill -9` or a clean
stop), and every model's events tell the story. Real servers, real workers."""

import concurrent.futures
import os
import signal
import sys
import time

import pytest

from helpers import (
    FIXTURE_LAUNCHERS,
    TESTS,
    Server,
    flexible_server,
    launch_tiny_llm,
    pid_alive,
    register_flexible,
    wait_until,
)

sys.path.insert(0, str(TESTS / "fixtures" / "llm"))
import tiny_llama  # noqa: E402

FAST = {"MODELYARD_HEALTH_INTERVAL": "0.2", "MODELYARD_RESTART_MAX": "2", "MODELYARD_RESTART_WINDOW": "60"}


def launch(http, uid, name="lc", **kwargs):
    response = http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": uid,
                                             **kwargs})
    assert response.status_code == 200, response.text
    return http.get(f"/v1/models/{uid}").json()["pid"]


def infer(http, uid, **kwargs):
    return http.post("/v1/flexible/infers", json={"model": uid, "args": ["sleep"], **kwargs})


def events(http, uid):
    response = http.get(f"/v1/models/{uid}/events")
    assert response.status_code == 200, response.text
    return [e["event"] for e in response.json()["events"]], response.json()["events"]


def worker_args(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def workers_of(server_pid):
    """The pids of the worker processes the server started (spares too)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent == server_pid and "modelyard.worker" in worker_args(int(entry)):
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def status(http, uid):
    response = http.get(f"/v1/models/{uid}")
    return response.json()["status"] if response.status_code == 200 else response.status_code


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory):
    return tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = flexible_server(tmp_path_factory.mktemp("restarts"), "lc", "lifecycle_models.launcher", FAST)
    yield server
    server.stop()


def test_a_killed_worker_is_started_again_and_says_so(srv, tmp_path):
    with srv.http() as http:
        # loading takes a second, so the restart can be seen
        pid = launch(http, "phoenix", load_seconds=1)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: status(http, "phoenix") == "RESTARTING", timeout=5)
        refused = infer(http, "phoenix")
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "RESTARTING" in refused.json()["detail"] and "exited with code -9" in refused.json()["detail"]
        assert wait_until(lambda: status(http, "phoenix") == "READY", timeout=10)
        described = http.get("/v1/models/phoenix").json()
        assert described["pid"] != pid and pid_alive(described["pid"]) and not pid_alive(pid)
        assert described["restarts"] == 1 and described["restart"] == "on-failure"
        assert described["last_exit"]["code"] == -9 and described["last_exit"]["signal"] == "SIGKILL"
        assert "lifecycle model loading from /path/to/model" in described["last_exit"]["log_tail"]
        assert infer(http, "phoenix", seconds=0).json() == {"slept": 0}
        names, found = events(http, "phoenix")
        assert names == ["launched", "ready", "exited", "restarting", "ready"]
        exited = found[2]
        assert exited["signal"] == "SIGKILL" and exited["pid"] == pid and "exited with code -9" in exited["reason"]
        assert found[3]["attempt"] == 1 and found[4]["pid"] == described["pid"]
        assert all(isinstance(e["at"], float) for e in found)
        assert http.delete("/v1/models/phoenix").status_code == 200
        assert events(http, "phoenix")[0][-1] == "terminated"  # the events outlive the model


def test_a_model_whose_load_keeps_failing_gives_up_after_its_bound(srv, tmp_path):
    flag = tmp_path / "refuse"
    with srv.http() as http:
        pid = launch(http, "doomed", fail_if_exists=str(flag))
        flag.write_text("from now on its load fails")
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: status(http, "doomed") == "FAILED", timeout=20)
        described = http.get("/v1/models/doomed").json()
        assert described["restarts"] == 2  # MODELYARD_RESTART_MAX
        assert "gave up after 2 restarts within 60 s" in described["error"]
        assert "load refused" in described["error"]
        names, found = events(http, "doomed")
        assert names[:3] == ["launched", "ready", "exited"] and names[-1] == "gave_up"
        assert names.count("restarting") == 2 and "ready" not in names[3:]
        assert infer(http, "doomed").status_code == 503
        time.sleep(1)
        assert http.get("/v1/models/doomed").json()["restarts"] == 2  # it stopped trying
        http.delete("/v1/models/doomed")


def test_a_call_in_flight_when_its_worker_dies_gets_a_503_and_the_next_one_an_answer(srv):
    with srv.http() as http:
        pid = launch(http, "busy")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(infer, http, "busy", seconds=30)
            time.sleep(0.3)
            os.kill(pid, signal.SIGKILL)
            assert in_flight.result(timeout=15).status_code == 503
        assert wait_until(lambda: status(http, "busy") == "READY", timeout=10)
        assert infer(http, "busy", seconds=0).status_code == 200
        http.delete("/v1/models/busy")


def test_a_model_whose_engine_broke_answers_503_and_comes_back_in_a_fresh_worker(srv):
    with srv.http() as http:
        pid = launch(http, "brittle")
        broken = http.post("/v1/flexible/infers", json={"model": "brittle", "args": ["broken"]})
        assert broken.status_code == 503 and "the fixture's engine died" in broken.json()["detail"], broken.text
        assert wait_until(lambda: not pid_alive(pid), timeout=5)

        def restarted() -> bool:
            described = http.get("/v1/models/brittle").json()
            return described["status"] == "READY" and described["pid"] not in (None, pid)

        assert wait_until(restarted, timeout=10)
        described = http.get("/v1/models/brittle").json()
        assert described["restarts"] == 1
        assert "the worker ends, for the restart policy" in described["last_exit"]["log_tail"]
        assert infer(http, "brittle", seconds=0).json() == {"slept": 0}
        http.delete("/v1/models/brittle")


def test_models_come_back_after_a_killed_server_and_after_a_clean_stop(tmp_path, tiny_llm_dir):
    home = tmp_path / "home"
    pids_file = tmp_path / "pids"
    first = Server(home).start()
    with first.http() as http:
        register_flexible(http, "lc", "lifecycle_models.launcher")  # not persisted: restored all the same
        launch(http, "keeper", record_pid_in=str(pids_file))
        launch_tiny_llm(http, tiny_llm_dir)
        launch(http, "gone")
        launch(http, "opted-out", restore=False)
        assert http.delete("/v1/models/gone").status_code == 200
        before = {m["id"]: m["pid"] for m in http.get("/v1/models").json()["data"]}
    first.stop(signal.SIGKILL)
    assert wait_until(lambda: not any(pid_alive(p) for p in before.values()), timeout=10)

    for stop in (signal.SIGKILL, signal.SIGTERM):
        again = Server(home).start()
        try:
            with again.http() as http:
                listed = {m["id"]: m["status"] for m in http.get("/v1/models").json()["data"]}
                assert set(listed) == {"keeper", "tiny"}  # at once, while they load
                assert wait_until(lambda: all(status(http, u) == "READY" for u in ("keeper", "tiny")), timeout=120)
                assert infer(http, "keeper", seconds=0).json() == {"slept": 0}
                # a spare worker, started before the server's app was imported, took it: its command
                # line names no model, yet the model's variables reached it before its load
                keeper_pid = http.get("/v1/models/keeper").json()["pid"]
                assert worker_args(keeper_pid)[-2:] == ["--model-uid", ""]
                assert http.post("/v1/flexible/infers", json={"model": "keeper", "args": ["environ"]}).json() == {
                    "MODELYARD_MODEL_UID": "keeper", "MODELYARD_REPLICA": "0", "LC_MARK": None}
                answer = http.post("/v1/completions", json={"model": "tiny", "prompt": "Once upon a time",
                                                            "max_tokens": 4, "temperature": 0})
                assert answer.status_code == 200 and answer.json()["choices"][0]["text"]
                assert "restored" in events(http, "keeper")[0] and events(http, "tiny")[0][-1] == "ready"
                assert http.get("/v1/models/gone").status_code == 404
                assert http.get("/v1/models/opted-out").status_code == 404
                pids = {m["id"]: m["pid"] for m in http.get("/v1/models").json()["data"]}
        finally:
            again.stop(stop)
        assert wait_until(lambda pids=pids: not any(pid_alive(p) for p in pids.values()), timeout=10)
    assert len(pids_file.read_text().split()) == 3  # launched, then restored twice

    quiet = Server(home, args=("--no-restore",)).start()
    try:
        with quiet.http() as http:
            time.sleep(1)
            assert http.get("/v1/models").json()["data"] == []
    finally:
        quiet.stop()


def test_a_restored_launch_the_gates_now_refuse_fails_with_that_reason_in_its_events(tmp_path):
    home = tmp_path / "home"
    first = Server(home).start()
    with first.http() as http:
        register_flexible(http, "lc", "lifecycle_models.launcher", persist=True)
        launch(http, "gated")
    first.stop()
    narrower = ",".join(p for p in FIXTURE_LAUNCHERS.split(",") if not p.startswith("lifecycle_models"))
    again = Server(home, env={"MODELYARD_ALLOWED_LAUNCHERS": narrower}).start()
    try:
        with again.http() as http:
            assert wait_until(lambda: "restore_failed" in events(http, "gated")[0], timeout=10)
            failed = events(http, "gated")[1][-1]
            assert "MODELYARD_ALLOWED_LAUNCHERS" in failed["reason"]
            assert http.get("/v1/models/gated").status_code == 404
            # the spare worker started for it was ended with the restore
            server_pid = http.get("/status").json()["pid"]
            assert wait_until(lambda: not workers_of(server_pid), timeout=10), workers_of(server_pid)
    finally:
        again.stop()


def test_a_restored_launch_with_variables_of_its_own_starts_a_worker_of_its_own(tmp_path):
    home, allowed = tmp_path / "home", {"MODELYARD_ALLOWED_ENVS": "LC_MARK"}
    first = Server(home, env=allowed).start()
    with first.http() as http:
        register_flexible(http, "lc", "lifecycle_models.launcher", persist=True)
        launch(http, "marked", envs={"LC_MARK": "1"})
        launch(http, "plain")
    first.stop(signal.SIGKILL)
    again = Server(home, env=allowed).start()
    try:
        with again.http() as http:
            assert wait_until(lambda: all(status(http, u) == "READY" for u in ("marked", "plain")), timeout=30)
            marked = http.get("/v1/models/marked").json()["pid"]
            assert worker_args(marked)[-2:] == ["--model-uid", "marked"]  # its variables were there at its start
            assert http.post("/v1/flexible/infers", json={"model": "marked", "args": ["environ"]}).json() == {
                "MODELYARD_MODEL_UID": "marked", "MODELYARD_REPLICA": "0", "LC_MARK": "1"}
            assert worker_args(http.get("/v1/models/plain").json()["pid"])[-2:] == ["--model-uid", ""]
            server_pid = http.get("/status").json()["pid"]
            assert sorted(workers_of(server_pid)) == sorted([marked, http.get("/v1/models/plain").json()["pid"]])
    finally:
        again.stop()
