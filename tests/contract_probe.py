"""Run as a program: a real modelyard server app in this process (the contract test plugin
registered in it), real workers, and worker calls made through its supervisor, since the public
routes for these model types come with their own issues. Prints what came back as JSON, and which
modules this process, the server's, imported.

    python contract_probe.py HOME
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import contract_plugin
from fastapi.testclient import TestClient

from modelyard.arrays import Array
from modelyard.errors import ModelyardError
from modelyard.plugins import get_plugins
from modelyard.worker import protocol as wire
from modelyard_server.app import create_app
from modelyard_server.settings import Settings


def shown(value: Any) -> Any:
    """What came over the link, as JSON the test can read."""
    if isinstance(value, Array):
        return {"array": value.dtype, "shape": list(value.shape), "values": value.tolist(),
                "row0_base64": value.row_base64(0)}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def main(home: Path) -> None:
    files = home / "weights"
    files.mkdir(parents=True, exist_ok=True)
    get_plugins().register(contract_plugin, "contract-plugin")
    templates = {
        # Xinference's builtin-catalogue form: the files' source per hub, in each spec
        "embedding": ("embedding", {"version": 2, "model_name": "fixture-embed", "dimensions": 4, "max_tokens": 512,
                                    "language": ["en"], "model_specs": [{"model_format": "pytorch", "model_src": {
                                        "huggingface": {"model_id": "BAAI/bge-small-en-v1.5",
                                                        "quantizations": ["none"]},
                                        "modelscope": {"model_id": "AI-ModelScope/bge-small-en-v1.5",
                                                       "quantizations": ["none"]}}}]}),
        # Xinference's custom templates
        "rerank": ("rerank", {"version": 2, "model_name": "fixture-rerank", "language": ["en"], "max_tokens": 512,
                              "model_specs": [{"model_uri": str(files), "model_format": "pytorch",
                                               "quantization": "none"}]}),
        "image": ("image", {"version": 2, "model_name": "fixture-image", "model_uri": str(files),
                            "model_ability": ["text2image", "image2image"], "model_family": "stable_diffusion",
                            "controlnet": []}),
        "audio": ("audio", {"version": 2, "model_name": "fixture-audio", "model_uri": str(files),
                            "multilingual": False, "model_family": "whisper",
                            "model_ability": ["audio2text", "text2audio"]}),
        # the catalogue form of media: model_src at the top
        "video": ("video", {"version": 2, "model_name": "fixture-video", "model_family": "CogVideoX",
                            "model_ability": ["text2video"], "default_model_config": {},
                            "model_src": {"huggingface": {"model_id": "THUDM/CogVideoX-2b", "model_revision": "r1"},
                                          "modelscope": {"model_id": "ZhipuAI/CogVideoX-2b"}}}),
    }
    out: dict[str, Any] = {}
    app = create_app(home, Settings.from_env())
    with TestClient(app, base_url="http://127.0.0.1") as client:
        supervisor = app.state.modelyard.supervisor

        def call(uid: str, method: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return shown(client.portal.call(lambda: supervisor.call(uid, method, list(args), kwargs,
                                                                        mode=wire.MODE_RAW)))
            except ModelyardError as exc:
                return {"error": exc.status, "message": exc.message}

        def launch(model_type: str, name: str, **extra: Any) -> dict[str, Any]:
            body = {"model_name": name, "model_type": model_type, **extra}
            response = client.post("/v1/models", json=body)
            if response.status_code != 200:
                return {"status": response.status_code, "detail": response.json()["detail"]}
            return client.get(f"/v1/models/{response.json()['model_uid']}").json()

        for model_type, template in templates.values():
            response = client.post(f"/v1/model_registrations/{model_type}", json={"model": json.dumps(template)})
            assert response.status_code == 200, response.text
        catalogue_path = {"model_path": str(files)}  # hubs are out of reach: the files are here
        out["described"] = {
            "embedding": launch("embedding", "fixture-embed", model_engine="fixture", scale=2, **catalogue_path),
            "rerank": launch("rerank", "fixture-rerank", model_engine="fixture"),
            "image": launch("image", "fixture-image"),
            "audio": launch("audio", "fixture-audio", model_engine="FIXTURE"),
            "video": launch("video", "fixture-video", model_engine="fixture", **catalogue_path),
            "twin-embedding": launch("embedding", "fixture-embed", model_uid="twin-embed", model_engine="Twin",
                                     **catalogue_path),
        }
        out["refused_launch_option"] = launch("embedding", "fixture-embed", model_uid="bad-option",
                                              model_engine="fixture", colour="red", **catalogue_path)
        out["engines_report"] = client.get("/v1/engines/embedding/fixture-embed").json()
        out["results"] = {
            "embed": call("fixture-embed", "embed", ["hello world", "a b c"]),
            "embed_one": call("fixture-embed", "embed", "just one"),
            "embed_refused": call("fixture-embed", "embed", ["x"], pooling="cls"),
            "embed_shorter": call("fixture-embed", "embed", ["x"], dimensions=2),
            "embed_bad_input": call("fixture-embed", "embed", []),
            "twin_embed": call("twin-embed", "embed", ["abc"]),
            "rerank": call("fixture-rerank", "rerank", ["red fox", "blue sky", "the red sky"], "red sky",
                           top_n=2, return_documents=True),
            "text_to_image": call("fixture-image", "text_to_image", "a cat", n=2, size="4x3", seed=5),
            "image_refused": call("fixture-image", "text_to_image", "a cat", style="noir"),
            "image_bad_size": call("fixture-image", "text_to_image", "a cat", size="big"),
            "transcribe": call("fixture-audio", "transcribe", b"RIFF0000WAVE", language="fr"),
            "speech": call("fixture-audio", "speech", "hello there", response_format="wav"),
            "text_to_video": call("fixture-video", "text_to_video", "waves", n=2),
        }
    out["server_modules"] = sorted({m.split(".")[0] for m in sys.modules})
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
