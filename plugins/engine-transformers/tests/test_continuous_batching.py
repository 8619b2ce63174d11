"""The transformers engine's continuous batching, on the tests' tiny Llama with the real library:
batched tokens equal transformers' own `generate`, each request keeps its own sampling, the batch
really forms (and keeps to `max_num_seqs`), and a newcomer is answered while a long request runs."""

import concurrent.futures
import sys
import threading
from pathlib import Path

import pytest
import torch

from modelyard.errors import InvalidRequest
from modelyard.llm.chunks import collect
from modelyard.types.llm import LLMRegistration

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "llm"))
import tiny_llama  # noqa: E402

# prompts of different lengths, so a batch of them is padded
PROMPTS = [f"Once upon a time {i}" + " there was a word" * i for i in range(8)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama-batch")))


def load(model_dir, **options):
    from modelyard_engine_transformers.llm import TransformersLLM

    registration = LLMRegistration.model_validate({
        "model_name": "tiny", "context_length": 512, "model_ability": ["generate"],
        "model_specs": [{"model_format": "pytorch", "quantization": "none", "model_uri": model_dir}]})
    engine = TransformersLLM("tiny", registration, registration.model_specs[0], model_dir, **options)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def batched(model_dir):
    return load(model_dir)


def answer(engine, prompt, **config):
    whole = collect(engine.generate(prompt, {"temperature": 0, "max_tokens": 24, **config}))
    return {**whole["choices"][0], "usage": whole["usage"]}


def concurrently(engine, prompts, configs):
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(lambda pc: answer(engine, pc[0], **pc[1]), zip(prompts, configs, strict=True)))


class StepSizes:
    """Notes the rows of every decode step the engine's batch makes (the real steps run)."""

    def __init__(self, engine):
        self.sizes: list[int] = []
        steps = engine.batcher.steps
        self.real = steps.step
        steps.step = self.step
        self.steps = steps

    def step(self, sequences):
        self.sizes.append(len(sequences))
        return self.real(sequences)

    def close(self):
        self.steps.step = self.real


def test_batched_greedy_tokens_equal_transformers_generate(batched):
    assert batched.batcher is not None  # batching is the default
    configs = [{"max_tokens": 24}] * len(PROMPTS)
    together = concurrently(batched, PROMPTS, configs)
    for prompt, got in zip(PROMPTS, together, strict=True):
        ids = batched.encode(prompt)
        with torch.inference_mode():
            out = batched.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                         max_new_tokens=24, do_sample=False, eos_token_id=batched.end_ids,
                                         pad_token_id=batched.pad_id)
        expected = out[0, len(ids):].tolist()
        assert got["text"] == batched.tokenizer.decode(expected, skip_special_tokens=True)
        assert got["usage"]["completion_tokens"] == len(expected)


def test_the_batch_forms_and_keeps_to_max_num_seqs(model_dir):
    engine = load(model_dir, max_num_seqs=3)
    sizes = StepSizes(engine)
    try:
        together = concurrently(engine, PROMPTS, [{"max_tokens": 24}] * len(PROMPTS))
    finally:
        sizes.close()
    assert max(sizes.sizes) == 3  # several at once, never more than the cap
    alone = load(model_dir, max_num_seqs=1)
    assert alone.batcher is None  # one at a time through transformers' generate, as before batching
    assert [answer(alone, p)["text"] for p in PROMPTS] == [t["text"] for t in together]


def test_seeded_sampling_and_penalties_are_each_requests_own_in_a_batch(batched):
    configs = [{"temperature": 0.9, "top_p": 0.9, "top_k": 40, "seed": i} if i % 2 else
               {"repetition_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.5}
               for i in range(len(PROMPTS))]
    solo = [answer(batched, p, **c) for p, c in zip(PROMPTS, configs, strict=True)]
    assert concurrently(batched, PROMPTS, configs) == solo
    plain = answer(batched, PROMPTS[0])
    assert solo[0]["text"] != plain["text"]  # the penalties changed the answer
    reseeded = answer(batched, PROMPTS[1], **{**configs[1], "seed": 12345})
    assert reseeded["text"] != solo[1]["text"]  # another seed, another sample


def test_a_newcomer_is_answered_while_a_long_request_generates(batched):
    long_done = threading.Event()
    stream = batched.generate(PROMPTS[0], {"temperature": 0, "max_tokens": 400})

    def read_long():
        for _ in stream:
            pass
        long_done.set()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = next(stream)  # the long request is generating
        assert first
        reader = pool.submit(read_long)
        short = answer(batched, PROMPTS[1], max_tokens=4)
        assert not long_done.is_set(), "the newcomer waited for the long request to end"
        reader.result(timeout=120)
    assert short["usage"]["completion_tokens"] <= 4 and short["text"]


@pytest.mark.parametrize("value", [0, -1, "many", 2.5, True])
def test_a_bad_max_num_seqs_is_refused(model_dir, value):
    with pytest.raises(InvalidRequest, match="max_num_seqs must be a positive integer"):
        load(model_dir, max_num_seqs=value)
