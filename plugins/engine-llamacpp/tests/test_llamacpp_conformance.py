"""The llama.cpp engine against modelyard's LLM suites on a tiny GGUF written from the tests' tiny
Llama (same weights and tokenizer), in-process and through a real server; and the same greedy text
as the transformers engine on those weights."""

import sys
from pathlib import Path

import pytest

from modelyard.llm.chunks import collect
from modelyard.testing.llm import LLMEngineSuite, LLMServerSuite, answer
from modelyard.testing.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "llm"))
import tiny_gguf  # noqa: E402
import tiny_llama  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def registration(uri, fmt="ggufv2", quantization="f32", **spec):
    return {"model_name": "tiny-gguf", "context_length": 512, "model_ability": ["generate", "chat"],
            "model_specs": [{"model_format": fmt, "quantization": quantization, "model_uri": uri, **spec}]}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-gguf")
    hf = tiny_llama.build(str(root / "hf"))
    (root / "gguf").mkdir()
    return {"hf": hf, "gguf": tiny_gguf.build(hf, str(root / "gguf" / "tiny-f32.gguf"))}


def loaded(uri, spec_extra=None, **options):
    from modelyard_engine_llamacpp.llm import LlamaCppLLM

    from modelyard.types.llm import LLMRegistration

    parsed = LLMRegistration.model_validate(registration(uri, **(spec_extra or {})))
    engine = LlamaCppLLM("tiny-gguf", parsed, parsed.model_specs[0], uri, n_threads=1, **options)
    engine.load()
    return engine


class TestLlamaCppLLM(LLMEngineSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, weights):
        return loaded(weights["gguf"])


class TestLlamaCppLLMServed(LLMServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, weights, tmp_path_factory):
        server = Server(tmp_path_factory.mktemp("llamacpp-server"), env=ENV).start()
        try:
            yield server, server.launch("LLM", registration(weights["gguf"]), engine="llama.cpp")
        finally:
            server.stop()


def greedy(engine, prompt, tokens=32):
    return collect(answer(engine, "generate", prompt, {"temperature": 0, "max_tokens": tokens}))["choices"][0]["text"]


def test_the_greedy_text_equals_the_transformers_engines_on_the_same_weights(weights):
    from modelyard_engine_transformers.llm import TransformersLLM

    from modelyard.types.llm import LLMRegistration

    parsed = LLMRegistration.model_validate(registration(weights["hf"], fmt="pytorch", quantization="none"))
    reference = TransformersLLM("tiny", parsed, parsed.model_specs[0], weights["hf"])
    reference.load()
    ours = loaded(weights["gguf"])
    for prompt in ("Once upon a time", "The user asks a question", "Hello there!"):
        assert greedy(ours, prompt) == greedy(reference, prompt)


def test_a_folder_and_xinferences_file_template_name_the_file(weights):
    folder = str(Path(weights["gguf"]).parent)
    engine = loaded(folder, {"model_file_name_template": "tiny-{quantization}.gguf"})
    assert greedy(engine, "Hello there!", 8) == greedy(loaded(weights["gguf"]), "Hello there!", 8)


def test_bad_paths_and_options_are_400s_that_say_what_is_wrong(weights, tmp_path):
    from modelyard.errors import InvalidRequest

    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"not a gguf file at all")
    empty = tmp_path / "empty"
    empty.mkdir()
    for uri, words in (("/no/such/model.gguf", "does not exist"), (str(not_gguf), "is not a GGUF file"),
                       (str(empty), "holds no .gguf file")):
        with pytest.raises(InvalidRequest, match=words):
            loaded(uri)
    with pytest.raises(InvalidRequest, match="n_ctx"):
        loaded(weights["gguf"], no_such_option=1)


def test_a_hub_download_of_a_catalogue_gguf_fetches_its_one_quantization():
    from modelyard_engine_llamacpp.plugin import register_engines

    from modelyard import catalogue
    from modelyard.types.embedding import EmbeddingRegistration
    from modelyard.types.llm import LLMRegistration

    engines = []
    register_engines(register=engines.append)
    by_type = {e.model_types[0]: e for e in engines}
    qwen3 = LLMRegistration.model_validate(next(r for r in catalogue.load("LLM") if r["model_name"] == "qwen3"))
    spec = next(s for s in qwen3.model_specs if s.model_format == "ggufv2" and s.model_size_in_billions == "4"
                and s.quantization == "Q4_K_M")
    assert spec.model_id == "Qwen/Qwen3-4B-GGUF"
    assert by_type["LLM"].needed_files(qwen3, spec) == ("Qwen3-4B-Q4_K_M.gguf",)
    assert by_type["LLM"].why_not(qwen3, spec) is None
    assert "not pytorch" in by_type["LLM"].why_not(qwen3, qwen3.model_specs[0])
    embedding = EmbeddingRegistration.model_validate(
        next(r for r in catalogue.load("embedding") if r["model_name"] == "Qwen3-Embedding-0.6B"))
    gguf_spec = next(s for s in embedding.specs() if s.model_format == "ggufv2")
    assert by_type["embedding"].needed_files(embedding, gguf_spec) == ("Qwen3-Embedding-0.6B-Q8_0.gguf",)
    pytorch_spec = next(s for s in embedding.specs() if s.model_format == "pytorch")
    assert "not pytorch" in by_type["embedding"].why_not(embedding, pytorch_spec)


def test_split_files_are_fetched_whole_and_open_at_their_first_part(weights, tmp_path):
    from modelyard_engine_llamacpp.files import gguf_file, hub_files

    from modelyard.types.llm import LLMRegistration

    parsed = LLMRegistration.model_validate(registration(str(tmp_path), quantization="q4_k_m",
                                            model_file_name_split_template="tiny-{quantization}-{part}.gguf",
                                            quantization_parts={"q4_k_m": ["00001-of-00002", "00002-of-00002"]}))
    spec = parsed.model_specs[0]
    assert hub_files(parsed, spec) == ["tiny-q4_k_m-*.gguf"]
    for part in ("00001-of-00002", "00002-of-00002"):
        (tmp_path / f"tiny-q4_k_m-{part}.gguf").write_bytes(b"GGUF" + bytes(8))
    assert gguf_file(str(tmp_path), spec) == str(tmp_path / "tiny-q4_k_m-00001-of-00002.gguf")
    assert gguf_file(str(tmp_path / "tiny-q4_k_m-00002-of-00002.gguf"), spec).endswith("-00001-of-00002.gguf")


def test_the_context_is_the_registrations_up_to_the_cap_unless_asked(weights, monkeypatch):
    assert loaded(weights["gguf"]).context_length == 512  # the registration's
    monkeypatch.setenv("MODELYARD_LLAMACPP_MAX_CTX", "256")
    assert loaded(weights["gguf"]).context_length == 256
    assert loaded(weights["gguf"], n_ctx=1024).context_length == 1024  # asked for: the cap is only the default's
