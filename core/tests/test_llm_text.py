import pytest

from modelyard.llm.reasoning import ReasoningSplitter
from modelyard.llm.stops import StopMatcher


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
