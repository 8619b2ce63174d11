"""GPU placement at launch: Xinference's `gpu_idx` and `n_gpu` decide the worker's
CUDA_VISIBLE_DEVICES. This machine has no GPU, so the server is told it has two
(`MODELYARD_GPU_COUNT`); what the worker's environment says is what a CUDA library would see."""

import httpx
import pytest

from helpers import Server, register_flexible


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("gpus"),
                    env={"MODELYARD_GPU_COUNT": "2", "MODELYARD_ALLOWED_LAUNCHERS": "security_models.*"}).start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert register_flexible(client, "seer", "security_models.launcher").status_code == 200
        yield client
    server.stop()


def visible_devices(http, **placement):
    launched = http.post("/v1/models", json={"model_name": "seer", "model_type": "flexible", "model_uid": "seer",
                                             **placement})
    assert launched.status_code == 200, launched.text
    try:
        environ = http.post("/v1/flexible/infers", json={"model": "seer"}).json()["environ"]
        return environ.get("CUDA_VISIBLE_DEVICES")
    finally:
        http.delete("/v1/models/seer")


def test_gpu_idx_and_n_gpu_set_what_the_worker_sees(http):
    assert visible_devices(http, gpu_idx=[1]) == "1"
    assert visible_devices(http, gpu_idx=0) == "0"
    assert visible_devices(http, gpu_idx=[0, 1], n_gpu=2) == "0,1"
    assert visible_devices(http, n_gpu=2) == "0,1"
    assert visible_devices(http, n_gpu=0) == ""  # on the CPU
    assert visible_devices(http, n_gpu="auto") is None  # what the server sees


@pytest.mark.parametrize("placement, words", [
    ({"gpu_idx": [3]}, "gpu_idx [3] is not a GPU of this machine, which has GPUs 0 to 1"),
    ({"n_gpu": 3}, "n_gpu 3 is more GPUs than this machine has (2)"),
    ({"gpu_idx": [0], "n_gpu": 2}, "n_gpu 2 disagrees with gpu_idx [0]"),
    ({"gpu_idx": ["a"]}, "gpu_idx"),
    ({"n_gpu": -1}, "n_gpu must be 'auto' or a whole number of GPUs"),
])
def test_a_placement_the_machine_cannot_give_is_a_400(http, placement, words):
    response = http.post("/v1/models", json={"model_name": "seer", "model_type": "flexible", **placement})
    assert response.status_code in (400, 422) and words in response.text, response.text
