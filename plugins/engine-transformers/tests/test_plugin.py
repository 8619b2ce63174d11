"""The transformers plugin's shim: found by entry point, light to import, and its match rule."""

import json
import subprocess
import sys

from modelyard_engine_transformers.plugin import match

from modelyard.plugins import Plugins
from modelyard.types import ModelSpec


def test_the_engine_is_registered_by_its_entry_point():
    plugins = Plugins()
    engine = plugins.engine("LLM", "Transformers")  # as Xinference spells it
    assert engine.model_types == ("LLM",) and engine.formats == ("pytorch",)
    assert engine.impl == "modelyard_engine_transformers.llm:TransformersLLM"
    record = plugins.records[engine.plugin]
    assert record.name == "transformers" and record.distribution == "modelyard-engine-transformers"
    assert record.contract == 1 and record.problems == []


def test_loading_the_shim_imports_no_ml_library():
    probe = ("import json, sys; from modelyard.plugins import Plugins; Plugins(); "
             "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == []


def test_match_refuses_quantized_weights_with_a_reason():
    assert match(None, ModelSpec(model_format="pytorch", quantization="none")) is None
    assert "quantization '4-bit'" in match(None, ModelSpec(model_format="pytorch", quantization="4-bit"))
