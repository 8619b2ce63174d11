"""The llama.cpp engine through a real server, as its users drive it: a GGUF registered from
Xinference's template by xinference-client, the openai SDK and xinference-client's handles, a
builtin family launched by model_path, and what it says when llama.cpp refuses a file."""

import json
import os
import sys
from pathlib import Path

import openai
import pytest
from xinference_client import RESTfulClient

from modelyard.testing.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "llm"))
import tiny_gguf  # noqa: E402
import tiny_llama  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]


def xinference_gguf_template(name, folder):
    """Xinference's version-2 custom LLM template for a GGUF model, as its documentation writes it."""
    return {"version": 2, "context_length": 512, "model_name": name, "model_lang": ["en"],
            "model_ability": ["generate", "chat"], "model_description": "tiny GGUF test model",
            "model_family": "tiny",
            "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_001", "quantization": "f32",
                             "model_id": None, "model_hub": "huggingface", "model_uri": folder,
                             "model_file_name_template": "tiny-{quantization}.gguf", "model_revision": None}],
            "chat_template": None, "stop_token_ids": None, "stop": None, "is_builtin": False}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-gguf-served")
    hf = tiny_llama.build(str(root / "hf"))
    (root / "gguf").mkdir()
    return {"hf": hf, "gguf": tiny_gguf.build(hf, str(root / "gguf" / "tiny-f32.gguf"))}


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights):
    server = Server(tmp_path_factory.mktemp("llamacpp-served"), env=ENV).start()
    client = RESTfulClient(server.url)
    folder = str(Path(weights["gguf"]).parent)
    client.register_model(model_type="LLM", model=json.dumps(xinference_gguf_template("tiny-gguf", folder)),
                          persist=False)
    uid = client.launch_model(model_name="tiny-gguf", model_type="LLM", model_engine="llama.cpp",
                              model_format="ggufv2", quantization="f32", n_threads=1)
    assert uid == "tiny-gguf"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)


def test_the_openai_sdk_gets_the_same_text_streamed_and_whole(oai):
    whole = oai.completions.create(model="tiny-gguf", prompt="Once upon a time", max_tokens=12, temperature=0)
    assert whole.usage.completion_tokens == 12 and whole.usage.prompt_tokens > 0  # max_tokens caps
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 12
    streamed = oai.completions.create(model="tiny-gguf", prompt="Once upon a time", max_tokens=12, temperature=0,
                                      stream=True, stream_options={"include_usage": True})
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 12
    chat = oai.chat.completions.create(model="tiny-gguf", messages=MESSAGES, max_tokens=10, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens == 10
    pieces = oai.chat.completions.create(model="tiny-gguf", messages=MESSAGES, max_tokens=10, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == chat.choices[0].message.content


def test_a_stop_string_that_spans_chunks_stops_the_answer(oai):
    text = oai.completions.create(model="tiny-gguf", prompt="The user asks", max_tokens=24, temperature=0
                                  ).choices[0].text
    stop = text[5:9]  # four characters from inside the answer, most likely across tokens
    cut = oai.completions.create(model="tiny-gguf", prompt="The user asks", max_tokens=24, temperature=0,
                                 stop=[stop], stream=True)
    chunks = list(cut)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text[:text.index(stop)]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_the_greedy_text_equals_the_transformers_engines_through_the_server(server, weights, oai):
    uid = server.launch("LLM", {"model_name": "tiny-hf", "context_length": 512, "model_ability": ["generate", "chat"],
                                "model_specs": [{"model_format": "pytorch", "quantization": "none",
                                                 "model_uri": weights["hf"]}]}, engine="transformers")
    try:
        for prompt in ("Once upon a time", "Hello there!"):
            texts = [oai.completions.create(model=m, prompt=prompt, max_tokens=24, temperature=0).choices[0].text
                     for m in ("tiny-gguf", uid)]
            assert texts[0] == texts[1]
        chats = [oai.chat.completions.create(model=m, messages=MESSAGES, max_tokens=16, temperature=0)
                 .choices[0].message.content for m in ("tiny-gguf", uid)]
        assert chats[0] == chats[1]
    finally:
        with server.http() as http:
            http.delete(f"/v1/models/{uid}")


def test_xinference_clients_chat_and_generate(server, oai):
    expected = oai.chat.completions.create(model="tiny-gguf", messages=MESSAGES, max_tokens=10, temperature=0
                                           ).choices[0].message.content
    model = RESTfulClient(server.url).get_model("tiny-gguf")
    assert type(model).__name__ == "RESTfulChatModelHandle"
    reply = model.chat(messages=MESSAGES, generate_config={"max_tokens": 10, "temperature": 0})
    assert reply["choices"][0]["message"]["content"] == expected
    chunks = model.chat(messages=MESSAGES, generate_config={"max_tokens": 10, "temperature": 0, "stream": True})
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == expected
    completion = model.generate("Once upon a time", generate_config={"max_tokens": 6, "temperature": 0})
    assert completion["usage"]["completion_tokens"] == 6
    assert completion["choices"][0]["text"] == oai.completions.create(
        model="tiny-gguf", prompt="Once upon a time", max_tokens=6, temperature=0).choices[0].text


def test_a_builtin_family_launches_by_model_path_on_llama_cpp(server, weights, oai):
    with server.http() as http:
        response = http.post("/v1/models", timeout=300, json={
            "model_name": "qwen2.5-instruct", "model_type": "LLM", "model_format": "ggufv2",
            "model_path": weights["gguf"], "n_threads": 1, "n_ctx": 512})
        assert response.status_code == 200, response.text
        uid = response.json()["model_uid"]
        described = http.get(f"/v1/models/{uid}").json()
        assert described["model_family"] == "qwen2.5-instruct" and described["model_engine"] == "llama.cpp"
    try:
        texts = [oai.completions.create(model=m, prompt="Hello there!", max_tokens=12, temperature=0).choices[0].text
                 for m in ("tiny-gguf", uid)]
        assert texts[0] == texts[1]  # the same weights, whatever the family's registration says
    finally:
        with server.http() as http:
            http.delete(f"/v1/models/{uid}")


def test_a_gguf_that_llama_cpp_refuses_fails_the_launch_in_its_own_words(server, weights, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    with open(weights["gguf"], "rb") as whole, open(truncated, "wb") as cut:
        cut.write(whole.read(os.path.getsize(weights["gguf"]) // 2))  # the header is whole, the tensors are not
    with server.http() as http:
        response = http.post("/v1/models", timeout=300, json={
            "model_name": "tiny-gguf", "model_type": "LLM", "model_uid": "truncated", "model_path": str(truncated),
            "n_threads": 1})
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert "llama.cpp could not load" in detail and "not within the file bounds" in detail, detail
        assert http.get("/v1/models/truncated").status_code == 404 or \
            http.get("/v1/models/truncated").json()["status"] == "FAILED"


def test_memory_stays_flat_across_many_requests(server, oai):
    with server.http() as http:
        pid = http.get("/v1/models/tiny-gguf").json()["pid"]

    def resident_kib():
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    def requests(count):
        for i in range(count):
            oai.completions.create(model="tiny-gguf", prompt=f"Request {i} says", max_tokens=16, temperature=0.8,
                                   seed=i)
            list(oai.chat.completions.create(model="tiny-gguf", messages=MESSAGES, max_tokens=8, stream=True))

    requests(40)  # allocators and caches reach their working size
    settled = resident_kib()
    requests(160)
    grown = resident_kib() - settled
    print(f"settled at {settled} KiB, grew by {grown} KiB")
    # a request's KV cache here is 256 KiB: keeping one per request would pass the bound by far
    assert grown < 8 * 1024, f"the worker grew by {grown} KiB over 320 requests"


def test_bad_paths_and_options_are_400s_through_the_server(server, tmp_path):
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("just text")
    with server.http() as http:
        for body, words in (({"model_path": "/no/such/file.gguf"}, "does not exist"),
                            ({"model_path": str(not_gguf)}, "is not a GGUF file"),
                            ({"n_threads": 1, "n_gpu_layer": 2}, "takes no launch option 'n_gpu_layer'"),
                            ({"n_threads": 0}, "n_threads must be a whole number above 0")):
            response = http.post("/v1/models", timeout=300, json={
                "model_name": "tiny-gguf", "model_type": "LLM", "model_uid": "bad", **body})
            assert response.status_code == 400 and words in response.json()["detail"], (body, response.text)
