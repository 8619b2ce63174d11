"""The builtin model catalogue: data files, one per model type, registered by core's plugin."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

FILES = {"LLM": "llm.json", "embedding": "embedding.json", "rerank": "rerank.json"}


def load(model_type: str) -> list[dict[str, Any]]:
    return json.loads(resources.files(__name__).joinpath(FILES[model_type]).read_text())
