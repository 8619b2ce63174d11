"""Worker lifecycle: crashes, hangs, chatter, cancellation, and no process left behind."""

import concurrent.futures
import itertools
import json
import os
import signal
import threading
import time

import httpx
import pytest

from helpers import Server, pid_alive, register_flexible, wait_until
from modelyard_server.worker_log import READ_BYTES

HEALTH = {"MODELYARD_HEALTH_INTERVAL": "0.2", "MODELYARD_HEALTH_TIMEOUT": "1", "MODELYARD_STALL_TIMEOUT": "1.5",
          "MODELYARD_STOP_GRACE": "2", "MODELYARD_LOG_MAX_BYTES": str(2 << 20), "MODELYARD_LOG_BACKUPS": "12"}


@pytest.fixture(scope="module")
def lc(tmp_path_factory):
    """A server with short health intervals, so hangs are noticed within the test's patience."""
    srv = Server(tmp_path_factory.mktemp("lifecycle"), env=HEALTH).start()
    with srv.http() as http:
        register_flexible(http, "lc", "lifecycle_models.launcher")
        register_flexible(http, "lc-stream", "lifecycle_models.streamer_launcher")
        register_flexible(http, "lc-async", "lifecycle_models.async_launcher")
        register_flexible(http, "lc-astream", "lifecycle_models.async_streamer_launcher")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server(lc):
    """This module's server; conftest's `http` fixture talks to it."""
    return lc


def launch(http, name, uid, **kwargs):
    response = http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": uid, **kwargs})
    assert response.status_code == 200, response.text
    return http.get(f"/v1/models/{uid}").json()["pid"]


def infer(http, uid, *args, **kwargs):
    return http.post("/v1/flexible/infers", json={"model": uid, "args": list(args), **kwargs})


def test_kill_9_of_a_worker_with_restart_never_fails_the_model_and_keeps_the_server(http):
    pid = launch(http, "lc", "crashy", restart="never")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(infer, http, "crashy", "sleep", seconds=30)
        assert wait_until(lambda: http.get("/v1/models/crashy").json()["status"] == "READY")
        time.sleep(0.3)  # let the call reach the worker
        os.kill(pid, signal.SIGKILL)
        response = in_flight.result(timeout=15)
    assert response.status_code == 503
    assert "exited with code -9" in response.json()["detail"]
    described = http.get("/v1/models/crashy").json()
    assert described["status"] == "FAILED" and described["exit_code"] == -9
    assert "exited with code -9" in described["error"]
    assert "lifecycle model loading from /path/to/model" in described["stderr_tail"]
    listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert listed["crashy"]["status"] == "FAILED" and listed["crashy"]["exit_code"] == -9
    later = infer(http, "crashy", "sleep")
    assert later.status_code == 503 and "FAILED" in later.json()["detail"]
    assert http.get("/status").status_code == 200
    # terminate, then launch again under the same uid
    assert http.delete("/v1/models/crashy").status_code == 200
    new_pid = launch(http, "lc", "crashy", restart="never")
    assert new_pid != pid
    assert infer(http, "crashy", "sleep", seconds=0).json() == {"slept": 0}
    # a FAILED model may also be replaced by launching straight over it
    os.kill(new_pid, signal.SIGKILL)
    assert wait_until(lambda: http.get("/v1/models/crashy").json()["status"] == "FAILED")
    launch(http, "lc", "crashy")
    assert infer(http, "crashy", "sleep", seconds=0).status_code == 200
    http.delete("/v1/models/crashy")


def test_a_crash_is_noticed_even_when_a_forked_child_lives_on_and_the_child_dies_too(http):
    pid = launch(http, "lc", "forker", spawn_child=True)
    forked = infer(http, "forker", "fork").json()
    spawned = infer(http, "forker", "children").json()[0]
    assert pid_alive(forked) and pid_alive(spawned)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(infer, http, "forker", "sleep", seconds=60)
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        response = in_flight.result(timeout=10)
    assert response.status_code == 503
    assert http.get("/v1/models/forker").json()["exit_code"] == -9
    assert wait_until(lambda: not pid_alive(forked) and not pid_alive(spawned), timeout=5)
    http.delete("/v1/models/forker")


def test_a_model_that_exits_gets_an_error_and_its_worker_lives(http):
    launch(http, "lc", "exiter")
    response = infer(http, "exiter", "exit")
    assert response.status_code == 500 and response.json()["detail"] == "SystemExit: 3"
    assert http.get("/v1/models/exiter").json()["status"] == "READY"
    assert infer(http, "exiter", "sleep", seconds=0).status_code == 200
    http.delete("/v1/models/exiter")


def test_terminate_ends_the_whole_process_group(http):
    pid = launch(http, "lc", "parent", spawn_child=True)
    children = infer(http, "parent", "children").json()
    assert len(children) == 1 and pid_alive(children[0])
    assert http.delete("/v1/models/parent").status_code == 200
    assert not pid_alive(pid)
    assert wait_until(lambda: not pid_alive(children[0]), timeout=5)


def test_many_calls_in_flight_on_one_worker(http):
    launch(http, "lc", "busy")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: infer(http, "busy", "sleep", seconds=0.5).status_code, range(8)))
    assert results == [200] * 8
    assert infer(http, "busy", "most_running").json() >= 4
    http.delete("/v1/models/busy")


def test_a_hung_call_marks_the_model_unhealthy_and_it_can_be_terminated(http):
    pid = launch(http, "lc", "hung")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(infer, http, "hung", "sleep", seconds=120)
        assert wait_until(lambda: http.get("/v1/models/hung").json()["status"] == "UNHEALTHY", timeout=10)
        described = http.get("/v1/models/hung").json()
        assert "no progress" in described["error"]
        refused = infer(http, "hung", "sleep", seconds=0)
        assert refused.status_code == 503 and "UNHEALTHY" in refused.json()["detail"]
        assert http.delete("/v1/models/hung").status_code == 200
    assert not pid_alive(pid)


def test_a_worker_whose_loop_is_blocked_is_unhealthy_then_recovers(http):
    launch(http, "lc-async", "blocked")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(infer, http, "blocked", 4, block_loop=True)
        assert wait_until(lambda: http.get("/v1/models/blocked").json()["status"] == "UNHEALTHY", timeout=10)
        assert "did not answer a health check" in http.get("/v1/models/blocked").json()["error"]
        assert call.result(timeout=30).json() == "blocked"
    assert wait_until(lambda: http.get("/v1/models/blocked").json()["status"] == "READY", timeout=10)
    http.delete("/v1/models/blocked")


def test_a_chatty_worker_never_blocks_and_its_log_is_kept_bounded(http, lc):
    launch(http, "lc", "chatty")
    for _ in range(3):
        response = infer(http, "chatty", "chatter", size=3 << 20)
        assert response.json() == {"wrote": 3 << 20}
    # the log writer drains the pipe as the worker writes: the last line reaches the file within moments
    logs = wait_until(lambda: http.get("/v1/models/chatty/logs", params={"lines": 5}).json(), timeout=5)
    assert wait_until(lambda: http.get("/v1/models/chatty/logs", params={"lines": 5}).json()["lines"].splitlines()[-1]
                      == "x" * 1023, timeout=5)
    assert len(logs["lines"].splitlines()) == 5
    log_path = lc.home / "logs" / "chatty.log"
    assert (lc.home / "logs" / "chatty.log.1").exists()
    assert log_path.stat().st_size <= (2 << 20) + READ_BYTES
    assert http.get("/v1/models/ghost/logs").status_code == 404
    http.delete("/v1/models/chatty")


def test_a_million_lines_are_all_kept_and_no_file_passes_the_limit(http, lc):
    launch(http, "lc", "numbered")
    count = 500_000
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call_started = time.monotonic()
        call = pool.submit(infer, http, "numbered", "numbered", size=count)
        waits = []
        while not call.done():
            started = time.monotonic()
            assert http.get("/status").status_code == 200
            waits.append(time.monotonic() - started)
            time.sleep(0.02)
        assert call.result().json() == {"wrote": 2 * count}
        call_seconds = time.monotonic() - call_started
    # The event loop kept answering all through the write: a loop that waited on the log would stall for most of
    # the call. The bound is relative to this run's own call, so a slow or noisy machine does not fail it.
    assert len(waits) > 10 and max(waits) < call_seconds / 4, (len(waits), max(waits), call_seconds)
    http.delete("/v1/models/numbered")  # its log writer has drained the pipe once the worker is gone
    logs = lc.home / "logs"
    files = [logs / "numbered.log", *sorted(logs.glob("numbered.log.*"))]
    assert len(files) > 3  # it rotated, several times
    seen = set()
    for path in files:
        assert path.stat().st_size <= (2 << 20) + READ_BYTES, path
        seen.update(path.read_text().splitlines())
    missing = [f"{who} {i}" for who in ("py", "child") for i in range(count) if f"{who} {i}" not in seen]
    assert not missing, (len(missing), missing[:5])


def test_a_streamed_call_stops_in_the_worker_when_the_client_leaves(http, tmp_path):
    launch(http, "lc-stream", "streamer")
    done_path = tmp_path / "stream-done"
    events = []
    with http.stream("POST", "/v1/flexible/infers", params={"stream": "true"},
                     json={"model": "streamer", "args": [10_000], "interval": 0.01, "path": str(done_path)}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            if len(events) == 5:
                break
    assert events == [{"i": i} for i in range(5)]
    assert wait_until(done_path.exists, timeout=10)
    assert int(done_path.read_text()) < 1000  # closed long before it would have finished


def test_a_whole_stream_ends_with_done(http, tmp_path):
    launch(http, "lc-stream", "streamer-all")
    with http.stream("POST", "/v1/flexible/infers", params={"stream": "true"},
                     json={"model": "streamer-all", "args": [3]}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines == ['data: {"i":0}', 'data: {"i":1}', 'data: {"i":2}', "data: [DONE]"]
    # a fast stream: items share writes, and every one arrives, in order, exactly once
    with http.stream("POST", "/v1/flexible/infers", params={"stream": "true"},
                     json={"model": "streamer-all", "args": [3000]}) as r:
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert [json.loads(e[6:])["i"] for e in events[:-1]] == list(range(3000))
    # without ?stream=true a generator's items come back as one JSON list
    assert infer(http, "streamer-all", 2).json() == [{"i": 0}, {"i": 1}]
    # an error before the first item is a proper HTTP error
    bad = http.post("/v1/flexible/infers", params={"stream": "true"}, json={"model": "streamer-all", "args": []})
    assert bad.status_code == 400 and "count" in bad.json()["detail"]
    http.delete("/v1/models/streamer-all")


@pytest.mark.parametrize("name", ["lc-stream", "lc-astream"])  # a generator in a thread, an async one on the loop
def test_a_slow_client_holds_the_stream_back_and_then_gets_all_of_it(http, tmp_path, name):
    uid = f"flooder-{name}"
    launch(http, name, uid)
    progress = tmp_path / "produced"
    count, size = 5000, 16 << 10  # 80 MB in all, were the model let run ahead
    with http.stream("POST", "/v1/flexible/infers", params={"stream": "true"},
                     json={"model": uid, "args": [count], "size": size,
                           "progress_path": str(progress)}) as r:
        lines = r.iter_lines()
        seen = [json.loads(line[6:])["i"] for line in itertools.islice(lines, 6) if line.startswith("data: ")]
        time.sleep(3)  # the client stops reading; the model could make all 5000 items meanwhile
        produced = int(progress.read_text())
        # the credit (256 items), plus what the sockets and buffers between hold
        assert produced < 1500, produced
        # waiting for a client is not a stalled model (this server's stall timeout is 1.5 s)
        assert http.get(f"/v1/models/{uid}").json()["status"] == "READY"
        seen += [json.loads(line[6:])["i"] for line in lines if line.startswith("data: {")]
    assert seen == list(range(count))
    http.delete(f"/v1/models/{uid}")


def test_a_dropped_client_cancels_its_call_in_the_worker(http, lc, tmp_path):
    launch(http, "lc-async", "waiter")
    marker = tmp_path / "cancelled"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(lc.url + "/v1/flexible/infers", json={"model": "waiter", "args": [60], "path": str(marker)},
                   timeout=0.5)
    assert wait_until(marker.exists, timeout=10)
    assert marker.read_text().startswith("cancelled in ")
    assert infer(http, "waiter", 0).json() == "waited"
    http.delete("/v1/models/waiter")


def _workers_of(server) -> list[int]:
    with server.http() as http:
        return [m["pid"] for m in http.get("/v1/models").json()["data"]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_the_server_ends_every_worker_even_with_a_stream_open(tmp_path, sig):
    srv = Server(tmp_path / "home", env=HEALTH).start()
    with srv.http() as http:
        register_flexible(http, "s", "lifecycle_models.streamer_launcher")
        register_flexible(http, "l", "lifecycle_models.launcher")
        launch(http, "s", "s1")
        launch(http, "l", "l1", spawn_child=True)
        child = infer(http, "l1", "children").json()[0]
    pids = _workers_of(srv)
    streaming = threading.Event()

    def hold_a_stream():
        try:
            with httpx.stream("POST", srv.url + "/v1/flexible/infers", params={"stream": "true"},
                              json={"model": "s1", "args": [100_000], "interval": 0.05}, timeout=60) as r:
                for _ in r.iter_lines():
                    streaming.set()
        except httpx.HTTPError:
            pass

    holder = threading.Thread(target=hold_a_stream, daemon=True)
    holder.start()
    assert streaming.wait(10)
    srv.stop(sig, timeout=30)  # bounded: graceful-shutdown timeout plus stop grace
    for pid in pids + [child]:
        assert not pid_alive(pid), pid
    holder.join(10)


def test_workers_and_their_children_exit_when_their_server_is_killed(tmp_path):
    srv = Server(tmp_path / "home").start()
    with srv.http() as http:
        register_flexible(http, "l", "lifecycle_models.launcher")
        launch(http, "l", "a", spawn_child=True)
        launch(http, "l", "b")
        child = infer(http, "a", "children").json()[0]
        # one more, still loading when the server dies
        http.post("/v1/models", params={"wait_ready": "false"},
                  json={"model_name": "l", "model_type": "flexible", "model_uid": "c", "load_seconds": 60})
        assert wait_until(lambda: http.get("/v1/models/c").json()["pid"] is not None)
    pids = _workers_of(srv)
    assert len(pids) == 3 and all(pid_alive(p) for p in pids + [child])
    srv.stop(signal.SIGKILL)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids + [child]), timeout=10)


def test_a_hung_load_fails_at_its_launch_timeout(http, lc):
    started = time.monotonic()
    waited = http.post("/v1/models", params={"wait_ready": "false"}, json={
        "model_name": "lc", "model_type": "flexible", "model_uid": "hung", "load_seconds": 600,
        "launch_timeout": 2})
    assert waited.status_code == 200
    assert wait_until(lambda: (http.get("/v1/models/hung/progress").json()["elapsed_seconds"] or 0) > 0.5, timeout=5)
    during = http.get("/v1/models/hung/progress").json()
    assert during["status"] == "LAUNCHING" and during["stage"] == "loading" and during["stage_seconds"] >= 0
    pid = http.get("/v1/models/hung").json()["pid"]
    assert wait_until(lambda: http.get("/v1/models/hung").json()["status"] == "FAILED", timeout=15)
    assert 2 <= time.monotonic() - started < 10
    error = http.get("/v1/models/hung").json()["error"]
    assert "launch timeout of 2 s" in error and "stage 'loading'" in error
    assert wait_until(lambda: not pid_alive(pid), timeout=10)
    http.delete("/v1/models/hung")
    # waited for, the launch answers with the error
    response = http.post("/v1/models", json={"model_name": "lc", "model_type": "flexible", "model_uid": "hung2",
                                             "load_seconds": 600, "launch_timeout": 1.5})
    assert response.status_code == 400 and "launch timeout of 1.5 s" in response.json()["detail"]
    for bad in (0, -1, "soon"):
        response = http.post("/v1/models", json={"model_name": "lc", "model_type": "flexible", "launch_timeout": bad})
        assert response.status_code in (400, 422) and "launch_timeout" in response.json()["detail"]
