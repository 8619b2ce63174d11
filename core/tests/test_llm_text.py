import pytest

from modelyard.llm.engine import LLMEngine
from modelyard.llm.reasoning import ReasoningSplitter
from modelyard.llm.stops import StopMatcher
from modelyard.types import ModelSpec
from modelyard.types.llm import LLMRegistration


def run(matcher, chunks):
    out = "".join(matcher.feed(c) for c in chunks)
    return out + matcher.flush(), matcher.stopped


@pytest.mark.parametrize("chunks, stops, expected", [
    (["Hello wor", "ld"], ["world"], ("Hello ", True)),
    (["Hel", "lo", " END", "ING more"], ["END"], ("Hello ", True)),
    (["abc"], [], ("abc", False)),
    (["ab", "c", "d"], ["cx"], ("abcd", False)),
    (["a<", "|", "im_", "end|>b"], ["<|im_end|>"], ("a", True)),
    (["xy"], ["y", "xy"], ("", True)),
    (["no stop ", "here <"], ["<stop>"], ("no stop here <", False)),
])
def test_stop_strings_across_chunks(chunks, stops, expected):
    assert run(StopMatcher(stops), chunks) == expected


def test_held_back_text_is_never_emitted_after_a_stop():
    m = StopMatcher(["STOP"])
    assert m.feed("aST") == "a"
    assert m.feed("OPb") == ""
    assert m.feed("more") == "" and m.flush() == ""


def split_all(splitter, chunks):
    r, c = zip(*(splitter.feed(x) for x in chunks), strict=True)
    fr, fc = splitter.flush()
    return "".join(r) + fr, "".join(c) + fc


def test_reasoning_split_with_tags_across_chunks():
    s = ReasoningSplitter("<think>", "</think>")
    assert split_all(s, ["<thi", "nk>let me", " think</th", "ink>The answer", " is 4"]) == (
        "let me think", "The answer is 4")


def test_reasoning_opened_by_the_prompt_and_unclosed():
    assert split_all(ReasoningSplitter("<think>", "</think>", in_reasoning=True), ["abc</think>x"]) == ("abc", "x")
    assert split_all(ReasoningSplitter("<think>", "</think>"), ["<think>never closed <"]) == ("never closed <", "")
    assert split_all(ReasoningSplitter("<think>", "</think>"), ["plain <thin"]) == ("", "plain <thin")


class ScriptedEngine(LLMEngine):
    """Not an engine: replays groups of token texts, to test what the base class makes of them."""

    def __init__(self, groups):
        registration = LLMRegistration(model_name="scripted", model_specs=[ModelSpec(model_format="pytorch")])
        super().__init__("scripted", registration, registration.model_specs[0], "")
        self.groups = groups

    def encode(self, prompt):
        return [1, 2, 3]

    def stream_tokens(self, prompt_ids, generation):
        for group in self.groups:
            generation.completion_tokens += len(group) if isinstance(group, list) else 1
            yield group


def test_a_group_of_tokens_is_one_chunk_and_a_stop_inside_ends_the_count_at_its_token():
    engine = ScriptedEngine([["Hel", "lo"], [" wor", "", "ld", " STOP", " never", " sent"]])
    chunks = list(engine.generate("x", {"stream": True, "stop": ["STOP"]}))
    assert [c["text"] for c in chunks if c["text"]] == ["Hello", " world "]
    assert chunks[-1]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}


def test_single_texts_and_groups_mix():
    engine = ScriptedEngine(["a", ["b", "c"], "d"])
    result = engine.generate("x", {"max_tokens": 4})
    assert result["text"] == "abcd" and result["usage"]["completion_tokens"] == 4
