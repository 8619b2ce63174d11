"""The llama.cpp embedding engine against modelyard's embedding suites, in-process and through a
real server, on tiny GGUFs written from the tests' tiny Llama with a pooling of their own (as
decoder embedding models' GGUFs declare it); and the same vectors as llama-cpp-python in-process."""

import sys
from pathlib import Path

import httpx
import pytest

from modelyard.errors import InvalidRequest
from modelyard.testing.embedding import EmbeddingEngineSuite, EmbeddingServerSuite, close, rows
from modelyard.testing.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "llm"))
import tiny_gguf  # noqa: E402
import tiny_llama  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1"}
TEXTS = ["the cat sat on the mat", "a dog ran in the park", "stock prices fell sharply"]


def registration(uri, name="tiny-embed", **spec):
    """Xinference's embedding template with a GGUF spec."""
    return {"version": 2, "model_name": name, "dimensions": 64, "max_tokens": 128, "language": ["en"],
            "model_specs": [{"model_format": "ggufv2", "quantization": "f32", "model_uri": uri, **spec}]}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-gguf-embed")
    hf = tiny_llama.build(str(root / "hf"))
    return {"mean": tiny_gguf.build(hf, str(root / "mean.gguf"), pooling="mean"),
            "last": tiny_gguf.build(hf, str(root / "last.gguf"), pooling="last"),
            "chat": tiny_gguf.build(hf, str(root / "chat.gguf"))}


def loaded(uri, **options):
    from modelyard_engine_llamacpp.embedding import LlamaCppEmbedding

    from modelyard.types.embedding import EmbeddingRegistration

    parsed = EmbeddingRegistration.model_validate(registration(uri))
    engine = LlamaCppEmbedding("tiny-embed", parsed, parsed.specs()[0], uri, n_threads=1, **options)
    engine.load()
    return engine


def reference(path, texts, pooling=None):
    """llama-cpp-python's own vectors, in this process."""
    from llama_cpp import Llama

    extra = {"pooling_type": pooling} if pooling is not None else {}
    llm = Llama(model_path=path, embedding=True, n_ctx=128, n_batch=128, n_ubatch=128, n_threads=1, verbose=False,
                **extra)
    try:
        return [llm.embed(text, normalize=True) for text in texts], [len(llm.tokenize(t.encode())) for t in texts]
    finally:
        llm.close()


class TestLlamaCppEmbedding(EmbeddingEngineSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, weights):
        return loaded(weights["mean"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("llamacpp-embed"), env=ENV).start()
    yield server
    server.stop()


class TestLlamaCppEmbeddingServed(EmbeddingServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, server, weights):
        yield server, server.launch("embedding", registration(weights["mean"]), engine="llama.cpp", n_threads=1)


def test_served_vectors_equal_llama_cpp_pythons_with_the_ggufs_own_pooling(server, weights):
    # no model_engine: a GGUF spec goes to llama.cpp by its format
    uid = server.launch("embedding", registration(weights["last"], name="tiny-last"), n_threads=1)
    with server.http() as http:
        assert http.get(f"/v1/models/{uid}").json()["model_engine"] == "llama.cpp"
        found = http.post("/v1/embeddings", json={"model": uid, "input": TEXTS}).json()
    expected, counts = reference(weights["last"], TEXTS)
    assert all(close(d["embedding"], e, 1e-5) for d, e in zip(found["data"], expected, strict=True))
    assert found["usage"]["prompt_tokens"] == sum(counts)
    mean, _ = reference(weights["mean"], TEXTS[:1])
    assert not close(found["data"][0]["embedding"], mean[0])  # the pooling was the GGUF's, not a default
    with server.http() as http:
        http.delete(f"/v1/models/{uid}")


def test_a_chat_gguf_without_pooling_embeds_by_mean(weights):
    from llama_cpp import LLAMA_POOLING_TYPE_MEAN

    from modelyard.testing.driving import settle

    engine = loaded(weights["chat"])
    found = rows(settle(engine.embed(TEXTS)).vectors)
    expected, _ = reference(weights["chat"], TEXTS, pooling=LLAMA_POOLING_TYPE_MEAN)
    assert all(close(a, b, 1e-5) for a, b in zip(found, expected, strict=True))
    engine.llm.close()


def test_long_inputs_are_cut_or_refused_and_bad_options_are_400s(weights):
    from modelyard.testing.driving import settle

    engine = loaded(weights["mean"], n_ctx=16)
    long = "word " * 40
    assert len(rows(settle(engine.embed(long)).vectors)[0]) == 64  # cut at the context
    with pytest.raises(InvalidRequest, match="reads at most 16"):
        settle(engine.embed(long, truncate=False))
    engine.llm.close()
    for options, words in (({"pooling": "max"}, "pooling must be one of mean, cls, last"),
                           ({"normalize": "yes"}, "normalize must be true or false"),
                           ({"n_ctx": "big"}, "n_ctx must be a whole number"),
                           ({"n_batch": 8}, "takes no launch option 'n_batch'")):
        with pytest.raises(InvalidRequest, match=words):
            loaded(weights["mean"], **options)


def test_with_pytorch_and_gguf_specs_the_format_picks_the_engine(server, weights):
    both = registration(weights["mean"], name="tiny-both")
    hf = str(Path(weights["mean"]).parent / "hf")  # a folder that exists: the pytorch spec is never launched
    both["model_specs"].insert(0, {"model_format": "pytorch", "quantization": "none", "model_uri": hf})
    server.register("embedding", both)
    with httpx.Client(base_url=server.url, timeout=300) as http:
        report = http.get("/v1/engines/embedding/tiny-both").json()
        assert {p["model_format"] for p in report["llama.cpp"]["params"]} == {"ggufv2"}
        assert {p["model_format"] for p in report["sentence_transformers"]["params"]} == {"pytorch"}
        launched = http.post("/v1/models", json={"model_name": "tiny-both", "model_type": "embedding",
                                                 "model_format": "ggufv2", "n_threads": 1})
        assert launched.status_code == 200, launched.text
        uid = launched.json()["model_uid"]
        assert http.get(f"/v1/models/{uid}").json()["model_engine"] == "llama.cpp"
        http.delete(f"/v1/models/{uid}")


def test_without_max_tokens_the_ggufs_own_context_is_read_up_to_the_cap(weights, monkeypatch):
    from modelyard_engine_llamacpp.embedding import LlamaCppEmbedding

    from modelyard.types.embedding import EmbeddingRegistration

    def max_tokens():
        data = registration(weights["mean"])
        del data["max_tokens"]
        parsed = EmbeddingRegistration.model_validate(data)
        engine = LlamaCppEmbedding("tiny-embed", parsed, parsed.specs()[0], weights["mean"], n_threads=1)
        engine.load()
        engine.llm.close()
        return engine.max_tokens

    assert max_tokens() == 512  # the tiny Llama's max_position_embeddings, from the GGUF's header
    monkeypatch.setenv("MODELYARD_LLAMACPP_MAX_CTX", "256")
    assert max_tokens() == 256
