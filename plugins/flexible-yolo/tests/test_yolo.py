"""The `yolo` flexible launcher through a real server, with Xinference's documented JSON file
(model_uri changed to a YOLO11n with random weights built here), driven by HTTP, the modelyard
client, the CLI and xinference-client.

The model's env is a real one: ultralytics with a torch/torchvision pair of its own (this machine's
torch==2.14.1 and torchvision==0.29.1, pinned at launch) over a server whose environment has a
different torch and no torchvision at all. It takes gigabytes, so it is built once per machine
(`shared_venv_dir`). Random weights: the tests assert the answer's shape and types, with conf=0.0
and max_det=N to get N boxes."""

import base64
import importlib.util
import io
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from xinference_client import RESTfulClient

from modelyard.client import Client
from modelyard.testing.server import Server, planned_env_python, shared_venv_dir

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "flexible"
PAIR = ["torch==2.14.1", "torchvision==0.29.1"]  # what lies on this machine's disk (the README shows how)
ENV = {"MODELYARD_TORCH_THREADS": "1"}
ENV_BUILD_SECONDS = 900  # a cold machine unpacks a 5 GB torch once
CALL = {"conf": 0.0, "imgsz": 64}


def documented(model_uri, name="yolo11s"):
    """Xinference's documentation's JSON file for its YOLO example, without its index_url."""
    return {"model_name": name, "model_id": None, "model_revision": None, "model_hub": "huggingface",
            "model_description": "YOLO is a popular real-time object detection model, widely used in image "
                                 "detection and video analysis scenarios.",
            "model_uri": model_uri, "launcher": "xinference.model.flexible.launchers.yolo", "launcher_args": "{}",
            "virtualenv": {"packages": ["ultralytics", "#system_numpy#"], "inherit_pip_config": True,
                           "index_url": None, "extra_index_url": None, "find_links": None, "trusted_host": None,
                           "no_build_isolation": None},
            "is_builtin": False}


def jpeg_base64(width=64, height=48, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("yolo-home"), env={**ENV, "MODELYARD_VENV_DIR": shared_venv_dir()}).start()
    yield server
    server.stop()


def launch(server, name, **options):
    with server.http() as http:
        return http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": name,
                                             "virtual_env_packages": PAIR, **options}, timeout=ENV_BUILD_SECONDS)


def infer(server, uid, **kwargs):
    with server.http() as http:
        return http.post("/v1/flexible/infers", json={"model": uid, **kwargs}, timeout=120)


@pytest.fixture(scope="module")
def weights(server, tmp_path_factory):
    """The tiny YOLO, built by the env's own python: the first launch names a file that does not
    exist yet, which fails after building the env (a 400 saying so), and the env then builds it."""
    missing = tmp_path_factory.mktemp("yolo") / "yolo11n.pt"
    server.register("flexible", documented(str(missing), "yolo-before-its-weights"))
    response = launch(server, "yolo-before-its-weights")
    assert response.status_code == 400 and "does not exist" in response.json()["detail"], response.text
    python = planned_env_python(documented(str(missing))["virtualenv"], "yolo", tuple(PAIR))
    assert python.exists(), "the server built the env under another key than the one planned here"
    subprocess.run([str(python), str(FIXTURES / "tiny_yolo.py"), str(missing)], check=True, capture_output=True,
                   timeout=300)
    return str(missing)


@pytest.fixture(scope="module")
def launched(server, weights):
    server.register("flexible", documented(weights))
    response = launch(server, "yolo11s")
    assert response.status_code == 200, response.text
    return "yolo11s"


def assert_detections(answer, images, boxes):
    assert isinstance(answer, list) and len(answer) == images
    for detections in answer:
        assert len(detections) == boxes
        for found in detections:
            assert set(found) == {"name", "class", "confidence", "box"}
            assert isinstance(found["name"], str) and isinstance(found["class"], int)
            assert isinstance(found["confidence"], float) and 0 <= found["confidence"] <= 1
            assert set(found["box"]) == {"x1", "y1", "x2", "y2"}
            assert all(isinstance(v, (int, float)) for v in found["box"].values())
            box = found["box"]
            assert 0 <= box["x1"] <= box["x2"] <= 64 and 0 <= box["y1"] <= box["y2"] <= 48  # the image's size


def test_the_documented_example_by_http_client_and_xinference_client(server, launched):
    image = jpeg_base64()
    response = infer(server, launched, source=image, max_det=5, **CALL)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_detections(answer, images=1, boxes=5)
    with Client(server.url) as client:
        assert client.get_model(launched).infer(source=image, max_det=5, **CALL) == answer
    assert RESTfulClient(server.url).get_model(launched).infer(source=image, max_det=5, **CALL) == answer


def test_its_worker_imports_torchvision_while_the_server_has_none(server, launched):
    assert importlib.util.find_spec("torchvision") is None  # the server's environment, which the test shares
    probe = subprocess.run([server.python, "-c", "import torchvision"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torchvision'" in probe.stderr
    with Client(server.url) as client:
        described = client.describe_model(launched)
    assert described["virtualenv"] and described["packages"]["torchvision"] == "0.29.1"
    assert described["packages"]["torch"] == "2.14.1" and described["packages"]["ultralytics"]


def test_registered_and_launched_by_the_cli(server, weights):
    path = Path(weights).with_name("yolo.json")
    path.write_text(json.dumps(documented(weights, "yolo-by-cli")))
    server.cli("register", "-t", "flexible", "-f", str(path))
    pins = [word for pin in PAIR for word in ("--virtual-env-package", pin)]
    assert "yolo-by-cli" in server.cli("launch", "-n", "yolo-by-cli", "--model-type", "flexible", "-u", "yolo-by-cli",
                                       *pins).stdout
    out = server.cli("infer", "-u", "yolo-by-cli", "--kwargs", json.dumps({"source": jpeg_base64(), "max_det": 3,
                                                                            **CALL})).stdout
    assert_detections(json.loads(out), images=1, boxes=3)
    server.cli("terminate", "-u", "yolo-by-cli")


def test_several_images_and_data_urls_and_no_keyword_outlives_its_call(server, launched):
    images = [jpeg_base64(seed=1), "data:image/jpeg;base64," + jpeg_base64(seed=2)]
    assert_detections(infer(server, launched, source=images, max_det=2, **CALL).json(), images=2, boxes=2)
    everything = infer(server, launched, source=jpeg_base64(), **CALL).json()
    assert len(everything[0]) > 2  # the max_det of the call before is not this call's


def test_concurrent_calls_queue_and_all_answer(server, launched):
    image = jpeg_base64(seed=3)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: infer(server, launched, source=image, max_det=4, **CALL), range(8)))
    assert all(a.status_code == 200 for a in answers)
    assert all(a.json() == answers[0].json() for a in answers)  # one call at a time: none saw another's state
    assert_detections(answers[0].json(), images=1, boxes=4)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"foo": 1}, "Unknown predict keyword 'foo'"),
    ({"save": True}, "'save' (in this call) writes files"),
    ({"project": "/tmp/x"}, "'project'"),
    ({"show": True}, "'show'"),
    ({"conf": "high"}, "conf"),
    ({"source": "aGVsbG8gd29ybGQ="}, "not an image"),
    ({"source": "https://ultralytics.com/images/bus.jpg"}, "does not fetch URLs"),
    ({"source": "screen"}, "screenshot"),
    ({"source": "/data/*.jpg"}, "globs are not served"),
    ({"source": 0}, "webcams and streams"),
    ({"source": "/etc/hostname"}, "outside the folders"),
])
def test_bad_calls_are_400s_that_say_what_is_wrong(server, launched, kwargs, words):
    response = infer(server, launched, **{"source": jpeg_base64(), **CALL, **kwargs})
    assert response.status_code == 400 and words in response.json()["detail"], response.text
    assert infer(server, launched, source=jpeg_base64(), max_det=1, **CALL).status_code == 200  # still usable


def test_the_plugin_is_listed(server):
    table = server.cli("plugins").stdout
    assert "modelyard-flexible-yolo" in table and "yolo" in table
