"""The server and the core import no ML library, and starting the server loads no plugin implementation."""

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "vllm", "llama_cpp", "ultralytics", "modelscope", "diffusers",
         "sentence_transformers", "numpy"]

PROBE = """
import json, sys
import modelyard.cli, modelyard.client, modelyard.registry, modelyard.worker.main
import modelyard_server.app, modelyard_server.serve
from modelyard.plugins import get_plugins
from modelyard_server.app import create_app
get_plugins()
create_app()
print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))
"""


def test_server_and_core_import_no_ml_library():
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    assert "fastapi" in loaded  # the probe did import the server
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
