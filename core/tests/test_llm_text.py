import asyncio

import pytest

from modelyard.errors import InvalidRequest
from modelyard.llm import chat_template
from modelyard.llm.async_engine import AsyncLLMEngine, Delta
from modelyard.llm.chunks import collect
from modelyard.llm.engine import LLMEngine
from modelyard.llm.params import ALL_PARAMS, BASE_PARAMS, parse_params
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
    chunks = list(engine.generate("x", {"stop": ["STOP"]}))
    assert [c["text"] for c in chunks if c.get("text")] == ["Hello", " world "]
    assert chunks[-2]["finish_reason"] == "stop"
    assert chunks[-1] == {"usage": {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}}


def test_single_texts_and_groups_mix():
    engine = ScriptedEngine(["a", ["b", "c"], "d"])
    result = collect(engine.generate("x", {"max_tokens": 4}))
    assert result["choices"][0]["text"] == "abcd" and result["usage"]["completion_tokens"] == 4


class ScriptedAsyncEngine(AsyncLLMEngine):
    """Not an engine: replays deltas, to test what the async base makes of them."""

    supported_params = ALL_PARAMS

    def __init__(self, deltas, applies_stops=False):
        registration = LLMRegistration(model_name="scripted", model_specs=[ModelSpec(model_format="pytorch")])
        super().__init__("scripted", registration, registration.model_specs[0], "")
        self.deltas, self.applies_stops, self.closed = deltas, applies_stops, False

    def encode(self, prompt):
        return [1, 2]

    async def stream_deltas(self, prompt_ids, generation):
        try:
            for delta in self.deltas:
                yield delta
        finally:
            self.closed = True


def drain(agen):
    async def run():
        return [c async for c in agen]
    return asyncio.run(run())


def test_async_choices_stop_on_their_own_and_the_rest_run_to_length():
    engine = ScriptedAsyncEngine([Delta(["a", "b"], index=0), Delta("x y", index=1, tokens=2),
                                  Delta(["c", "END", "zz"], index=0), Delta(["never"], index=0),
                                  Delta(" z", index=1, finish_reason="stop")])
    chunks = drain(engine.generate("p", {"n": 3, "stop": ["END"]}))
    whole = collect(chunks)
    assert [(c["index"], c["text"], c["finish_reason"]) for c in whole["choices"]] == [
        (0, "abc", "stop"), (1, "x y z", "stop"), (2, "", "length")]
    # choice 0 counts its tokens up to the stop's own ("a", "b", "c", "END"); choice 1 its 3
    assert whole["usage"] == {"prompt_tokens": 2, "completion_tokens": 7, "total_tokens": 9}
    assert engine.closed


def test_an_engine_that_applies_stops_itself_is_not_cut_again_and_logprobs_follow_the_text():
    lp = [{"token": "END", "logprob": -0.5, "top_logprobs": []}]
    engine = ScriptedAsyncEngine([Delta(["END"], logprobs=lp, finish_reason="stop")], applies_stops=True)
    whole = collect(drain(engine.generate("p", {"stop": ["END"], "logprobs": True})))
    assert whole["choices"][0]["text"] == "END" and whole["choices"][0]["logprobs"] == lp


def test_all_choices_stopped_ends_the_library_stream_early():
    engine = ScriptedAsyncEngine([Delta(["ab"]), Delta(["never"])] + [Delta(["x"])] * 100)
    chunks = drain(engine.generate("p", {"stop": ["b"]}))
    assert collect(chunks)["choices"][0]["text"] == "a" and engine.closed
    assert chunks[-1]["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize("config, message", [
    ({"n": 0}, "n must be >= 1"), ({"n": 99}, "n must be <= 16"), ({"top_logprobs": 2}, "needs logprobs: true"),
    ({"logprobs": True, "top_logprobs": 50}, "top_logprobs must be <= 20"), ({"logprobs": -1}, "logprobs must be"),
])
def test_choices_and_logprobs_are_checked(config, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_params(config, ALL_PARAMS)


def test_choices_and_logprobs_parse_in_both_forms_and_defaults_pass_everywhere():
    assert parse_params({"n": 3, "logprobs": True, "top_logprobs": 4}, ALL_PARAMS).logprobs == 4
    assert parse_params({"logprobs": 2}, ALL_PARAMS).logprobs == 2  # the legacy completions form
    assert parse_params({"logprobs": True}, ALL_PARAMS).logprobs == 0
    plain = parse_params({"n": 1, "logprobs": False, "stream": True}, BASE_PARAMS)
    assert (plain.n, plain.logprobs) == (1, None)
    with pytest.raises(InvalidRequest, match="Unsupported parameters for this model: logprobs, n"):
        parse_params({"n": 2, "logprobs": True}, BASE_PARAMS)


def test_a_chat_template_renders_in_a_sandbox():
    messages = [{"role": "user", "content": "hi"}]
    template = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content | tojson }}{% endfor %}" \
               "{% if add_generation_prompt %}<assistant>{% endif %}"
    assert chat_template.render(template, messages, special_tokens={"bos_token": "<s>"}) == '<s><user>"hi"<assistant>'
    with pytest.raises(InvalidRequest, match="sandbox forbids"):
        chat_template.render("{{ ''.__class__.__mro__[1].__subclasses__() }}", messages)
    with pytest.raises(InvalidRequest, match="sandbox forbids"):
        chat_template.render("{% set _ = messages.append(1) %}", messages)
    with pytest.raises(InvalidRequest, match="refused these messages: only users"):
        chat_template.render("{{ raise_exception('only users') }}", messages)
    with pytest.raises(InvalidRequest, match="not valid Jinja"):
        chat_template.render("{% for %}", messages)


def test_chat_template_kwargs_may_not_replace_what_the_request_decides():
    with pytest.raises(InvalidRequest, match="may not set add_generation_prompt, messages"):
        chat_template.render("x", [], template_kwargs={"messages": [], "add_generation_prompt": False})
    assert chat_template.render("{{ enable_thinking }}", [], template_kwargs={"enable_thinking": True}) == "True"


def test_a_sync_engine_that_declares_choices_is_still_refused_them():
    engine = ScriptedEngine(["a"])
    engine.supported_params = ALL_PARAMS
    with pytest.raises(InvalidRequest, match="one choice and no log-probabilities"):
        list(engine.generate("x", {"n": 2}))


def test_a_delta_of_no_tokens_counts_none_and_a_multi_token_stop_keeps_its_logprobs():
    lp = [{"token": t, "logprob": -1.0, "top_logprobs": []} for t in ("ab", " cd", " ef")]
    engine = ScriptedAsyncEngine([Delta("ab cd ef", tokens=3, logprobs=lp), Delta("", tokens=0, finish_reason="stop")])
    whole = collect(drain(engine.generate("p", {"logprobs": True, "stop": ["zz"]})))
    assert whole["usage"]["completion_tokens"] == 3 and whole["choices"][0]["logprobs"] == lp
    engine = ScriptedAsyncEngine([Delta("ab cd ef", tokens=3, logprobs=lp)])
    whole = collect(drain(engine.generate("p", {"logprobs": True, "stop": ["ef"]})))
    assert whole["choices"][0]["text"] == "ab cd " and whole["choices"][0]["logprobs"] == lp
