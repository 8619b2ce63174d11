"""LLMs through the whole stack with the real transformers engine on a tiny model built here.

The model (tests/fixtures/llm/tiny_llama.py) emits printable ASCII only and never its end token,
so every request runs to max_tokens and streamed text equals non-streamed text at temperature 0.
"""

import concurrent.futures
import json
import sys

import httpx
import openai
import pytest
from xinference_client import RESTfulClient

from helpers import TESTS, Server, launch_tiny_llm, llm_template, wait_until

sys.path.insert(0, str(TESTS / "fixtures" / "llm"))
import tiny_llama  # noqa: E402

MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def llm(tmp_path_factory, model_dir):
    env = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    srv = Server(tmp_path_factory.mktemp("llm"), env=env).start()
    with srv.http() as http:
        launch_tiny_llm(http, model_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(llm):
    return openai.OpenAI(base_url=llm.url + "/v1", api_key="not-needed", max_retries=0)


def chat_text(oai, messages=MESSAGES, **kwargs):
    response = oai.chat.completions.create(model="tiny", messages=messages, temperature=0, **kwargs)
    return response.choices[0].message.content, response


def stream_chat(oai, messages=MESSAGES, **kwargs):
    stream = oai.chat.completions.create(model="tiny", messages=messages, temperature=0, stream=True, **kwargs)
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return pieces, finish, chunks


def test_chat_completion_and_stream_agree(oai, tokenizer):
    text, response = chat_text(oai, max_tokens=24)
    assert text and text.isascii()
    assert response.choices[0].finish_reason == "length"
    pieces, finish, chunks = stream_chat(oai, max_tokens=24, stream_options={"include_usage": True})
    assert "".join(pieces) == text
    # streamed, not one lump: the first token goes at once; tokens that come within
    # MODELYARD_STREAM_FLUSH_MS of each other share a chunk (on this fast tiny model, many do)
    assert len([p for p in pieces if p]) > 1
    assert finish == ["length"]
    usage = chunks[-1].usage
    assert usage.completion_tokens == 24
    prompt_ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert response.usage.prompt_tokens == len(prompt_ids["input_ids"]) == usage.prompt_tokens
    assert response.usage.completion_tokens == 24
    assert response.usage.total_tokens == response.usage.prompt_tokens + 24


def test_completions_and_stream_agree(oai, tokenizer):
    response = oai.completions.create(model="tiny", prompt="Once upon a time", max_tokens=20, temperature=0)
    text = response.choices[0].text
    assert text and response.choices[0].finish_reason == "length"
    assert response.usage.prompt_tokens == len(tokenizer("Once upon a time")["input_ids"])
    assert response.usage.completion_tokens == 20
    stream = oai.completions.create(model="tiny", prompt="Once upon a time", max_tokens=20, temperature=0,
                                    stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == text


def test_max_tokens_caps(oai):
    _, response = chat_text(oai, max_tokens=3)
    assert response.usage.completion_tokens == 3
    _, response = chat_text(oai, max_completion_tokens=5)
    assert response.usage.completion_tokens == 5


def test_a_stop_string_stops_even_across_chunks(oai):
    pieces, _, _ = stream_chat(oai, max_tokens=40)
    full = "".join(pieces)
    # a stop string made of the end of one streamed piece and the start of the next
    k = next(i for i in range(2, len(pieces) - 1) if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    expected = full[:full.index(stop)]
    text, response = chat_text(oai, max_tokens=40, stop=[stop])
    assert text == expected and response.choices[0].finish_reason == "stop"
    streamed, finish, _ = stream_chat(oai, max_tokens=40, stop=stop)
    assert "".join(streamed) == expected and finish == ["stop"]
    assert all(stop not in p for p in streamed)


def test_a_client_that_leaves_stops_its_generation(llm):
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 200, "temperature": 0, "stream": True}
    with httpx.Client(base_url=llm.url, timeout=60) as http:
        def stopped_lines():
            lines = http.get("/v1/models/tiny/logs", params={"lines": 1000}).json()["lines"]
            return [x for x in lines.splitlines() if x.startswith("modelyard: generation stopped after")]

        before = len(stopped_lines())
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            events = 0
            for line in response.iter_lines():
                events += line.startswith("data: ")
                if events == 2:  # the role, then the first token, which is never held back
                    break
        assert wait_until(lambda: len(stopped_lines()) > before, timeout=10)
        assert int(stopped_lines()[-1].split()[4]) < 200


def test_eight_concurrent_streams_each_get_their_solo_text(oai):
    prompts = [[{"role": "user", "content": f"Question number {i}: what is {i} plus {i}?"}] for i in range(8)]
    alone = [chat_text(oai, messages=m, max_tokens=16)[0] for m in prompts]
    assert len(set(alone)) > 1  # the prompts lead to different texts, so mixing would show
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda m: "".join(stream_chat(oai, messages=m, max_tokens=16)[0]), prompts))
    assert together == alone


def test_seed_decides_sampling_also_under_concurrency(oai):
    def sample(seed):
        return oai.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=seed,
                                           max_tokens=16).choices[0].message.content

    first = sample(7)
    assert sample(7) == first
    assert len({sample(s) for s in (1, 2, 3, 4)}) > 1
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(pool.map(sample, [7, 7, 7, 7])) == {first}


def test_penalties_and_top_k_are_honoured_or_refused_by_name(oai):
    for kwargs in ({"presence_penalty": 1.5}, {"frequency_penalty": 1.0}, {"top_p": 0.5},
                   {"extra_body": {"top_k": 5, "repetition_penalty": 1.3}}):
        _, response = chat_text(oai, max_tokens=4, **kwargs)
        assert response.usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError, match="presence_penalty must be <= 2"):
        chat_text(oai, max_tokens=4, presence_penalty=5)
    with pytest.raises(openai.BadRequestError, match="Unsupported parameter for this model: logprobs"):
        chat_text(oai, max_tokens=4, logprobs=True)
    with pytest.raises(openai.BadRequestError, match="Unsupported parameter for this model: n[.] It honours"):
        chat_text(oai, max_tokens=4, n=2)  # one choice for n=2 would be a silent lie
    with pytest.raises(openai.BadRequestError, match="Unsupported parameter for this model: n"):
        oai.completions.create(model="tiny", prompt="Once", max_tokens=4, n=3)
    assert len(chat_text(oai, max_tokens=4, n=1)[1].choices) == 1
    with pytest.raises(openai.BadRequestError, match="Unsupported parameters for this model: logit_bias, tools"):
        chat_text(oai, max_tokens=4, logit_bias={"1": 5}, tools=[{"type": "function", "function": {"name": "f"}}])


def test_bad_requests_are_openai_shaped_4xx(oai, llm):
    with pytest.raises(openai.NotFoundError, match="No model with uid 'nope'"):
        oai.chat.completions.create(model="nope", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="max_tokens must be >= 1"):
        chat_text(oai, max_tokens=-1)
    too_long = [{"role": "user", "content": "word " * 400}]
    with pytest.raises(openai.BadRequestError, match="context length"):
        chat_text(oai, messages=too_long)
    with pytest.raises(openai.BadRequestError, match="exceeds this model's context length"):
        chat_text(oai, max_tokens=10_000)
    with httpx.Client(base_url=llm.url) as http:
        missing = http.post("/v1/chat/completions", json={"model": "tiny"})
        assert missing.status_code == 422
        assert missing.json()["error"]["message"] == "Invalid request: messages: Field required"
        null_stream = http.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES,
                                                              "stream": None, "max_tokens": 2})
        assert null_stream.status_code == 200 and null_stream.json()["usage"]["completion_tokens"] == 2
        streamed_error = http.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES,
                                                                 "stream": True, "max_tokens": 0})
        assert streamed_error.status_code == 400 and "max_tokens" in streamed_error.json()["detail"]
        # a model of another type
        spec = {"model_name": "notllm", "launcher": "edge_models.launcher"}
        http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)})
        http.post("/v1/models", json={"model_name": "notllm", "model_type": "flexible"})
        wrong = http.post("/v1/chat/completions", json={"model": "notllm", "messages": MESSAGES})
        assert wrong.status_code == 400 and "is a flexible model" in wrong.json()["error"]["message"]
        http.delete("/v1/models/notllm")
        bad_role = http.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"content": "x"}]})
        assert bad_role.status_code == 400 and "messages[0]" in bad_role.json()["detail"]


@pytest.mark.parametrize("field, value", [
    ("temperature", "NaN"), ("top_p", "NaN"), ("presence_penalty", "NaN"), ("repetition_penalty", "NaN"),
    ("frequency_penalty", "Infinity"), ("temperature", "-Infinity"), ("repetition_penalty", "Infinity"),
    ("temperature", "2.5"), ("top_p", "0"), ("presence_penalty", "-3"), ("repetition_penalty", "1e9"),
])
def test_non_finite_and_out_of_range_parameters_are_400_naming_the_field(llm, field, value):
    for path, extra in (("/v1/chat/completions", '"messages": [{"role": "user", "content": "hi"}]'),
                        ("/v1/completions", '"prompt": "hi"')):
        body = f'{{"model": "tiny", "max_tokens": 2, {extra}, "{field}": {value}}}'
        response = httpx.post(llm.url + path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert field in response.json()["detail"]


def test_the_empty_prompt_starts_from_the_bos_token(oai):
    completion = oai.completions.create(model="tiny", prompt="", max_tokens=3, temperature=0)
    assert completion.usage.prompt_tokens == 1 and completion.usage.completion_tokens == 3
    assert completion.choices[0].text


def test_a_huge_prompt_is_refused_before_it_is_tokenized(llm):
    import time

    prompt = "word " * (2 * 2**20 // 5)  # 2 MiB
    started = time.monotonic()
    response = httpx.post(llm.url + "/v1/completions", json={"model": "tiny", "prompt": prompt}, timeout=60)
    elapsed = time.monotonic() - started
    assert response.status_code == 400 and "bytes long" in response.json()["detail"]
    assert elapsed < 1.0, elapsed  # tokenizing it first took seconds
    chat = httpx.post(llm.url + "/v1/chat/completions", timeout=60,
                      json={"model": "tiny", "messages": [{"role": "user", "content": prompt}]})
    assert chat.status_code == 400 and "bytes long" in chat.json()["detail"]


def test_models_listing_and_description(oai, llm):
    assert "tiny" in [m.id for m in oai.models.list()]
    assert oai.models.retrieve("tiny").id == "tiny"
    with httpx.Client(base_url=llm.url) as http:
        described = http.get("/v1/models/tiny").json()
    assert described["model_type"] == "LLM" and "chat" in described["model_ability"]
    assert described["model_engine"] == "transformers" and described["context_length"] == 256


def test_engine_is_picked_when_not_named_and_engines_route(llm, model_dir):
    with httpx.Client(base_url=llm.url, timeout=300) as http:
        spec = json.dumps(llm_template("tiny-auto", model_dir))
        assert http.post("/v1/model_registrations/LLM", json={"model": spec}).status_code == 200
        report = http.get("/v1/engines/LLM/tiny-auto").json()
        assert report["transformers"]["available"] is True
        assert report["transformers"]["params"][0]["model_format"] == "pytorch"
        # only the LLM engines that are registered, or suggested from this repository and not installed
        assert set(report) == {"transformers", "llama.cpp", "vllm"}
        assert report["transformers"]["plugin"].endswith("/transformers")
        # llama.cpp is installed too, and says why it does not serve this model's only spec
        assert report["llama.cpp"]["available"] is False and "not pytorch" in json.dumps(report["llama.cpp"])
        assert http.get("/v1/engines/tiny-auto").json() == report
        assert http.get("/v1/engines/LLM/ghost").status_code == 404
        assert http.post("/v1/models", json={"model_name": "tiny-auto", "model_type": "LLM"}).status_code == 200
        assert http.get("/v1/models/tiny-auto").json()["model_engine"] == "transformers"
        http.delete("/v1/models/tiny-auto")
    client = RESTfulClient(llm.url)
    assert client.query_engine_by_model_name("tiny-auto", model_type="LLM")["transformers"]["available"] is True


def test_launch_a_builtin_family_by_model_path(llm, model_dir, oai):
    expected, _ = chat_text(oai, max_tokens=12)
    with httpx.Client(base_url=llm.url, timeout=300) as http:
        response = http.post("/v1/models", json={"model_name": "qwen2.5-instruct", "model_type": "LLM",
                                                 "model_engine": "transformers", "model_path": model_dir})
        assert response.status_code == 200, response.text
        uid = response.json()["model_uid"]
        described = http.get(f"/v1/models/{uid}").json()
        assert described["model_family"] == "qwen2.5-instruct" and described["model_engine"] == "transformers"
    reply = oai.chat.completions.create(model=uid, messages=MESSAGES, temperature=0, max_tokens=12)
    assert reply.choices[0].message.content == expected
    with httpx.Client(base_url=llm.url) as http:
        http.delete(f"/v1/models/{uid}")
        missing = http.post("/v1/models", json={"model_name": "qwen2.5-instruct", "model_type": "LLM",
                                                "model_path": "/no/such/dir"})
        assert missing.status_code == 400 and "/no/such/dir" in missing.json()["detail"]


def test_a_builtin_without_local_files_tries_its_hub(llm):
    with httpx.Client(base_url=llm.url, timeout=120) as http:
        response = http.post("/v1/models", json={"model_name": "qwen2.5-instruct", "model_type": "LLM",
                                                 "model_size_in_billions": "0_5", "model_engine": "transformers"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "Downloading Qwen/Qwen2.5-0.5B-Instruct from huggingface failed" in detail


def test_builtin_catalogue_is_listed(llm):
    with httpx.Client(base_url=llm.url) as http:
        names = {r["model_name"]: r for r in http.get("/v1/model_registrations/LLM").json()}
        assert {"qwen2.5-instruct", "qwen3", "llama-3.1-instruct", "mistral-instruct-v0.3"} <= set(names)
        assert names["qwen3"]["is_builtin"] is True
        qwen3 = http.get("/v1/model_registrations/LLM/qwen3").json()
        hubs = {(s["model_hub"], s["model_id"]) for s in qwen3["model_specs"]}
        assert ("huggingface", "Qwen/Qwen3-8B") in hubs and ("modelscope", "Qwen/Qwen3-8B") in hubs
        assert qwen3["reasoning_start_tag"] == "<think>"


def test_reasoning_content_is_split_out(llm, model_dir, oai):
    text, _ = chat_text(oai, max_tokens=30)
    start, end = text[3:5], text[12:14]
    assert start not in text[:3] and end not in text[5:12] and start != end
    with httpx.Client(base_url=llm.url, timeout=300) as http:
        spec = json.dumps(llm_template("tiny-think", model_dir, reasoning_start_tag=start, reasoning_end_tag=end))
        http.post("/v1/model_registrations/LLM", json={"model": spec})
        assert http.post("/v1/models", json={"model_name": "tiny-think", "model_type": "LLM"}).status_code == 200
    reply = oai.chat.completions.create(model="tiny-think", messages=MESSAGES, temperature=0, max_tokens=30)
    message = reply.choices[0].message
    assert message.reasoning_content == text[5:12]
    assert message.content == text[:3] + text[14:]
    stream = oai.chat.completions.create(model="tiny-think", messages=MESSAGES, temperature=0, max_tokens=30,
                                         stream=True)
    reasoning, content = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert (reasoning, content) == (message.reasoning_content, message.content)
    with httpx.Client(base_url=llm.url) as http:
        http.delete("/v1/models/tiny-think")


def test_xinference_client_chat_and_generate(llm, oai):
    expected, _ = chat_text(oai, max_tokens=10)
    client = RESTfulClient(llm.url)
    model = client.get_model("tiny")
    assert type(model).__name__ == "RESTfulChatModelHandle"
    reply = model.chat(messages=MESSAGES, generate_config={"max_tokens": 10, "temperature": 0})
    assert reply["choices"][0]["message"]["content"] == expected
    chunks = model.chat(messages=MESSAGES, generate_config={"max_tokens": 10, "temperature": 0, "stream": True})
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == expected
    completion = model.generate("Once upon a time", generate_config={"max_tokens": 6, "temperature": 0})
    assert completion["usage"]["completion_tokens"] == 6 and completion["choices"][0]["text"]


def test_modelyard_client_and_cli(llm, oai):
    from modelyard.client import Client

    expected, _ = chat_text(oai, max_tokens=10)
    model = Client(llm.url).get_model("tiny")
    assert model.chat(MESSAGES, {"max_tokens": 10, "temperature": 0})["choices"][0]["message"]["content"] == expected
    streamed = model.chat(MESSAGES, {"max_tokens": 10, "temperature": 0, "stream": True})
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed if c["choices"]) == expected
    generated = llm.cli("generate", "--model-uid", "tiny", "Once upon a time", "--max-tokens", "6",
                        "--temperature", "0", "--no-stream").stdout.strip()
    assert generated == oai.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6,
                                               temperature=0).choices[0].text.strip()
    import subprocess

    session = subprocess.run([llm.python, "-m", "modelyard", "chat", "--model-uid", "tiny", "--max-tokens", "10",
                              "--temperature", "0"], input="Hello, how are you?\n\n", env=llm.env,
                             capture_output=True, text=True, timeout=120)
    assert session.returncode == 0, session.stderr
    assert session.stdout.strip() == expected.strip()


def test_with_no_stream_window_every_token_is_a_chunk_of_its_own(model_dir, monkeypatch):
    from modelyard_engine_transformers.llm import TransformersLLM

    from modelyard.types.llm import LLMRegistration

    monkeypatch.setenv("MODELYARD_STREAM_FLUSH_MS", "0")
    registration = LLMRegistration.model_validate(llm_template("tiny", model_dir))
    engine = TransformersLLM("tiny", registration, registration.model_specs[0], model_dir)
    engine.load()
    chunks = list(engine.generate("Once upon a time", {"max_tokens": 24, "temperature": 0}))
    assert chunks[-2]["finish_reason"] == "length"
    assert len([c for c in chunks[:-1] if c["text"]]) == chunks[-1]["usage"]["completion_tokens"] == 24


def test_xinference_launch_flags_select_the_spec_and_unknown_options_are_refused(llm, model_dir):
    with httpx.Client(base_url=llm.url, timeout=300) as http:
        spec = json.dumps(llm_template("tiny-flags", model_dir))
        assert http.post("/v1/model_registrations/LLM", json={"model": spec}).status_code == 200
    # Xinference's own flags: they select the spec, and never reach from_pretrained
    llm.cli("launch", "-n", "tiny-flags", "-t", "LLM", "-e", "transformers", "--size-in-billions", "0_001",
            "--model-format", "pytorch", "--quantization", "none", "-u", "tiny-flags")
    llm.cli("terminate", "-u", "tiny-flags")
    wrong = llm.cli("launch", "-n", "tiny-flags", "-e", "transformers", "--model-format", "ggufv2", check=False)
    assert wrong.returncode == 1 and "has no spec with format=ggufv2" in wrong.stderr
    unknown = llm.cli("launch", "-n", "tiny-flags", "-e", "transformers", "-u", "tiny-opt", "--colour", "red",
                      check=False)
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert "TransformersLLM takes no launch option 'colour'" in unknown.stderr and "torch_dtype" in unknown.stderr


def test_chat_on_a_model_without_the_chat_ability_is_refused_before_the_worker(llm, model_dir):
    with httpx.Client(base_url=llm.url, timeout=300) as http:
        spec = json.dumps(llm_template("tiny-generate", model_dir, model_ability=["generate"]))
        assert http.post("/v1/model_registrations/LLM", json={"model": spec}).status_code == 200
        assert http.post("/v1/models", json={"model_name": "tiny-generate", "model_engine": "transformers"}
                         ).status_code == 200
        refused = http.post("/v1/chat/completions", json={"model": "tiny-generate", "messages": MESSAGES})
        assert refused.status_code == 400
        assert refused.json()["detail"] == ("Model 'tiny-generate' cannot chat: its abilities are generate "
                                            "(it answers generate).")
        completed = http.post("/v1/completions", json={"model": "tiny-generate", "prompt": "Once", "max_tokens": 3})
        assert completed.status_code == 200 and completed.json()["usage"]["completion_tokens"] == 3
        http.delete("/v1/models/tiny-generate")


def test_metrics_count_generated_tokens_and_time_the_first(llm, oai):
    from prometheus_client.parser import text_string_to_metric_families

    def scrape():
        with llm.http() as http:
            text = http.get("/metrics").text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    tokens, first_tokens = ("modelyard_generated_tokens_total", (("model", "tiny"),)), \
        ("modelyard_time_to_first_token_seconds_count", (("model", "tiny"),))
    before = scrape()
    _, response = chat_text(oai, max_tokens=7)
    _, _, chunks = stream_chat(oai, max_tokens=5, stream_options={"include_usage": True})
    after = scrape()
    generated = response.usage.completion_tokens + chunks[-1].usage.completion_tokens
    assert after[tokens] - before.get(tokens, 0) == generated
    assert after[first_tokens] - before.get(first_tokens, 0) == 1  # streamed requests only
