"""The model-type contract end to end: an engine for each of embedding, rerank, image, audio and
video (the test plugin's fakes: the contract is the unit here) launches from Xinference's own
template for its type through the real server, and a worker call returns its typed result."""

import base64
import json
import os
import struct
import subprocess
import sys

import pytest

from helpers import TESTS

HEAVY = ["numpy", "torch", "transformers", "vllm", "llama_cpp", "sentence_transformers", "diffusers"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    home = tmp_path_factory.mktemp("contract-home")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS / "fixtures" / "contract")])}
    done = subprocess.run([sys.executable, str(TESTS / "contract_probe.py"), str(home)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize(("key", "engine", "methods"), [
    ("embedding", "fixture", ["embed"]), ("rerank", "fixture", ["rerank"]),
    ("image", "fixture", ["text_to_image", "image_to_image"]), ("audio", "fixture", ["transcribe", "speech"]),
    ("video", "fixture", ["text_to_video"]), ("twin-embedding", "twin", ["embed"])])
def test_every_type_launches_from_its_xinference_template(probe, key, engine, methods):
    described = probe["described"][key]
    assert described["status"] == "READY", described
    assert described["model_engine"] == engine and described["methods"] == methods


def test_media_abilities_are_kept_as_declared(probe):
    assert probe["described"]["image"]["model_ability"] == ["text2image", "image2image"]
    assert probe["described"]["video"]["revision"] == "r1"  # from the catalogue form's model_src


def test_numpy_vectors_travel_as_float32_and_the_server_never_imports_numpy(probe):
    vectors = probe["results"]["embed"]["vectors"]
    # float64 in the engine, little-endian float32 on the link, scaled by the launch option scale=2
    assert vectors["array"] == "<f4" and vectors["shape"] == [2, 4]
    assert vectors["values"] == [[22.0, 4.0, 1.0, 4.0], [10.0, 6.0, 1.0, 0.0]]
    assert struct.unpack("<4f", base64.b64decode(vectors["row0_base64"])) == (22.0, 4.0, 1.0, 4.0)
    assert probe["results"]["embed"]["prompt_tokens"] == 5
    assert probe["results"]["embed_one"]["vectors"]["shape"] == [1, 4]
    assert not set(probe["server_modules"]) & set(HEAVY)
    assert "fastapi" in probe["server_modules"]


def test_one_plugin_names_an_engine_for_two_types_with_two_implementations(probe):
    # lists from the engine, a float32 matrix on the link like every engine's vectors
    assert probe["results"]["twin_embed"]["vectors"]["values"] == [[7.0, 3.0]]
    assert probe["results"]["twin_embed"]["prompt_tokens"] == 1
    report = probe["engines_report"]
    # the embedding engines: the fixtures' and the installed sentence_transformers, and no LLM engine
    assert {"fixture", "twin"} <= set(report) and "transformers" not in report
    assert report["twin"]["plugin"] == "contract-plugin"


def test_what_an_engine_cannot_honour_is_refused_by_name(probe):
    results = probe["results"]
    refused_embed = results["embed_refused"]
    assert refused_embed["error"] == 400 and "cannot honour pooling" in refused_embed["message"]
    assert results["embed_shorter"]["error"] == 400 and "not trained for shorter" in results["embed_shorter"]["message"]
    assert results["embed_bad_input"]["error"] == 400
    assert results["embed_bad_input"]["message"].startswith("input must be a string, a non-empty list of strings")
    refused_image = results["image_refused"]["message"]
    assert "cannot honour style" in refused_image and "honours: seed" in refused_image
    assert results["image_bad_size"]["error"] == 400 and "WIDTHxHEIGHT" in results["image_bad_size"]["message"]
    refused = probe["refused_launch_option"]
    assert refused["status"] == 400
    assert "takes no launch option 'colour'" in refused["detail"] and "scale: multiply" in refused["detail"]


def test_typed_results_of_rerank_image_audio_video(probe):
    results = probe["results"]
    assert results["rerank"] == {"results": [{"index": 2, "relevance_score": 2.0, "document": "the red sky"},
                                             {"index": 0, "relevance_score": 1.0, "document": "red fox"}],
                                 "prompt_tokens": 7}
    images = results["text_to_image"]
    assert images["format"] == "png" and len(images["images"]) == 2
    first = base64.b64decode(images["images"][0]["bytes"])
    assert first.startswith(b"\x89PNG") and struct.unpack(">II", first[16:24]) == (4, 3)
    assert results["transcribe"] == {"text": "heard 12 bytes", "language": "fr", "duration": 0.5, "segments": []}
    speech = results["speech"]
    assert speech["format"] == "wav" and base64.b64decode(speech["audio"]["bytes"]).startswith(b"RIFF")
    assert [base64.b64decode(v["bytes"]) for v in results["text_to_video"]["videos"]] == [b"video 0: waves",
                                                                                         b"video 1: waves"]
