"""Registration schemas accept Xinference's version-2 custom-model templates unchanged."""

import pytest
from pydantic import ValidationError

from modelyard.plugins import Plugins

VENV = {"packages": [], "inherit_pip_config": True, "index_url": None, "extra_index_url": None,
        "find_links": None, "trusted_host": None, "no_build_isolation": None}

TEMPLATES = {
    "LLM": {
        "version": 2, "context_length": 2048, "model_name": "custom-llama-3", "model_lang": ["en"],
        "model_ability": ["generate", "chat"], "model_description": "A custom LLM",
        "model_family": "llama-3",
        "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_5", "quantization": "none",
                         "model_id": None, "model_hub": "huggingface", "model_uri": "/path/to/llama-3",
                         "model_revision": None},
                        {"model_format": "ggufv2", "model_size_in_billions": 7, "quantization": "q4_0",
                         "model_file_name_template": "llama-3-7b.{quantization}.gguf", "model_uri": None}],
        "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
        "stop_token_ids": [128001, 128009], "stop": ["<|eot_id|>"],
        "reasoning_start_tag": None, "reasoning_end_tag": None, "cache_config": None,
        "virtualenv": VENV, "is_builtin": False,
    },
    "embedding": {
        "version": 2, "model_name": "custom-bge", "dimensions": 768, "max_tokens": 512, "language": ["en"],
        "model_specs": [{"model_format": "pytorch", "model_id": None, "model_revision": None,
                         "model_hub": "huggingface", "model_uri": "/path/to/bge", "quantization": "none"}],
        "cache_config": None, "virtualenv": VENV, "is_builtin": False,
    },
    "rerank": {
        "version": 2, "model_name": "custom-reranker", "language": ["en", "zh"], "type": "unknown",
        "max_tokens": 512,
        "model_specs": [{"model_format": "pytorch", "model_id": None, "model_revision": None,
                         "model_hub": "huggingface", "model_uri": "/path/to/rerank", "quantization": "none"}],
        "virtualenv": VENV, "is_builtin": False,
    },
    "image": {
        "model_name": "custom-sd", "model_id": None, "model_revision": None, "model_hub": "huggingface",
        "cache_config": None, "version": 2, "model_family": "stable_diffusion",
        "model_ability": ["text2image", "image2image"], "controlnet": [], "default_model_config": {},
        "default_generate_config": {}, "gguf_model_id": None, "gguf_quantizations": None,
        "gguf_model_file_name_template": None, "lightning_model_id": None, "lightning_versions": None,
        "lightning_model_file_name_template": None, "virtualenv": VENV, "model_uri": "/path/to/sd",
        "is_builtin": False,
    },
    "audio": {
        "model_name": "custom-tts", "model_id": None, "model_revision": None, "model_hub": "huggingface",
        "cache_config": None, "version": 2, "model_family": "ChatTTS", "multilingual": False,
        "language": "en", "model_ability": ["text2audio"], "default_model_config": {},
        "default_transcription_config": {}, "engine": None, "virtualenv": VENV, "model_uri": "/path/to/tts",
        "is_builtin": False,
    },
    "flexible": {
        "model_name": "my-flexible-model", "model_id": None, "model_revision": None, "model_hub": "huggingface",
        "cache_config": None, "version": 2, "model_description": "a scorer", "model_uri": "/path/to/model",
        "launcher": "my_flexible_model.launcher", "launcher_args": "{\"pos\": [\"good\"]}",
        "virtualenv": VENV, "is_builtin": False,
    },
}


@pytest.fixture(scope="module")
def plugins():
    return Plugins(autoload=False)


def test_seven_model_types_are_registered_by_core(plugins):
    assert set(plugins.model_types) == {"LLM", "embedding", "rerank", "image", "audio", "video", "flexible"}
    assert plugins.records["modelyard.types.builtin"].registered["model_types"] == [
        "LLM", "embedding", "rerank", "image", "audio", "video", "flexible"]


@pytest.mark.parametrize("model_type", sorted(TEMPLATES))
def test_xinference_templates_parse_and_keep_unknown_keys(plugins, model_type):
    template = TEMPLATES[model_type]
    registration = plugins.model_type(model_type).parse(template)
    dumped = registration.model_dump(mode="json")
    for key, value in template.items():
        if key == "virtualenv":
            assert {k: dumped[key][k] for k in value} == value
        elif key == "model_specs":
            for given, kept in zip(value, dumped[key], strict=True):
                assert {k: kept[k] for k in given} == given
        else:
            assert dumped[key] == value, key


def test_a_quantizations_list_is_one_spec_per_quantization(plugins):
    template = {**TEMPLATES["LLM"], "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 7,
                                                     "quantizations": ["4-bit", "none"]}]}
    registration = plugins.model_type("LLM").parse(template)
    assert [s.quantization for s in registration.specs()] == ["4-bit", "none"]


def test_a_catalogue_spec_with_model_src_is_one_spec_per_hub_and_quantization(plugins):
    entry = {"version": 2, "model_name": "qwen-gguf", "context_length": 2048, "model_ability": ["chat"],
             "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_5", "model_src": {
                 "huggingface": {"model_id": "Qwen/Q-GGUF", "quantizations": ["q4_k_m", "q8_0"],
                                 "model_file_name_template": "q-{quantization}.gguf"},
                 "modelscope": {"model_id": "qwen/Q-GGUF", "quantizations": ["q4_k_m"], "model_revision": "master"}}}]}
    llm = plugins.model_type("LLM")
    specs = llm.specs(llm.parse(entry))
    assert [(s.model_hub, s.model_id, s.quantization) for s in specs] == [
        ("huggingface", "Qwen/Q-GGUF", "q4_k_m"), ("huggingface", "Qwen/Q-GGUF", "q8_0"),
        ("modelscope", "qwen/Q-GGUF", "q4_k_m")]
    assert specs[0].model_file_name_template == "q-{quantization}.gguf" and specs[2].model_revision == "master"
    assert llm.specs(llm.parse(llm.parse(entry).model_dump(mode="json"))) == specs  # what is stored reads back


def test_media_specs_come_from_the_flat_template_or_the_top_level_model_src(plugins):
    image = plugins.model_type("image")
    flat = image.parse({"version": 2, "model_name": "custom-image", "model_uri": "/models/sd",
                        "model_ability": ["text2image"], "model_family": "stable_diffusion", "controlnet": []})
    (spec,) = image.specs(flat)
    assert spec.model_uri == "/models/sd" and spec.model_id is None
    audio = plugins.model_type("audio")
    catalogue = audio.parse({"version": 2, "model_name": "whisper-tiny", "model_family": "whisper",
                             "model_ability": ["audio2text"], "multilingual": True, "model_format": "pytorch",
                             "model_src": {"huggingface": {"model_id": "openai/whisper-tiny", "model_revision": "abc"},
                                           "modelscope": {"model_id": "AI-ModelScope/whisper-tiny"}}})
    specs = audio.specs(catalogue)
    assert [(s.model_hub, s.model_id, s.model_revision, s.model_format) for s in specs] == [
        ("huggingface", "openai/whisper-tiny", "abc", "pytorch"),
        ("modelscope", "AI-ModelScope/whisper-tiny", None, "pytorch")]


@pytest.mark.parametrize(("model_type", "declared", "methods"), [
    ("image", ["text2image", "inpainting"], ["text_to_image"]),
    ("image", ["image2image", "text2image"], ["image_to_image", "text_to_image"]),
    ("audio", ["audio2text"], ["transcribe"]),
    ("audio", ["text-to-audio"], ["speech"]),
    ("video", ["text2video", "image2video"], ["text_to_video"]),
    ("image", ["ocr"], ["text_to_image", "image_to_image"]),  # no ability with a method: all of the type's
    ("LLM", ["generate", "tools", "vision", "reasoning", "hybrid"], ["generate"]),
    ("LLM", ["chat", "tools"], ["chat", "generate"]),
])
def test_abilities_map_to_methods_and_the_rest_are_kept(plugins, model_type, declared, methods):
    mt = plugins.model_type(model_type)
    base = TEMPLATES.get(model_type) or {"model_name": "m", "model_uri": "/m"}
    registration = mt.parse({**base, "model_ability": declared})
    assert mt.methods(registration) == methods
    assert registration.abilities(mt) == declared  # kept whole, shown as declared


@pytest.mark.parametrize("value", ["https://example.invalid/simple", ["https://a.invalid", "https://b.invalid"]])
def test_virtualenv_string_or_list_fields(plugins, value):
    venv = {**VENV, "extra_index_url": value, "find_links": value, "trusted_host": value}
    registration = plugins.model_type("flexible").parse({**TEMPLATES["flexible"], "virtualenv": venv})
    assert registration.virtualenv.find_links == value
    assert registration.virtualenv.extra_index_url == value
    with pytest.raises(ValidationError):
        plugins.model_type("flexible").parse({**TEMPLATES["flexible"], "virtualenv": {**venv, "find_links": 3}})


def test_flexible_launcher_args_as_string_or_object(plugins):
    flexible = plugins.model_type("flexible")
    assert flexible.parse(TEMPLATES["flexible"]).launcher_kwargs() == {"pos": ["good"]}
    assert flexible.parse({**TEMPLATES["flexible"], "launcher_args": {"a": 1}}).launcher_kwargs() == {"a": 1}
    assert flexible.parse({**TEMPLATES["flexible"], "launcher_args": None}).launcher_kwargs() == {}
    with pytest.raises(ValidationError, match="launcher_args must be a JSON object"):
        flexible.parse({**TEMPLATES["flexible"], "launcher_args": "[1, 2]"})


def test_abilities_come_from_the_registration_or_the_type(plugins):
    llm = plugins.model_type("LLM")
    assert llm.parse(TEMPLATES["LLM"]).abilities(llm) == ["generate", "chat"]
    flexible = plugins.model_type("flexible")
    assert flexible.parse(TEMPLATES["flexible"]).abilities(flexible) == ["infer"]


def test_model_type_lookup_is_case_insensitive_and_lists_known_types(plugins):
    assert plugins.model_type("llm").name == "LLM"
    assert plugins.model_type("Embedding").name == "embedding"
    with pytest.raises(Exception, match="Unknown model type 'chat'. Known model types: LLM, audio"):
        plugins.model_type("chat")
