"""The shared LLM streaming parts: incremental detokenization and the consuming loop."""

import threading

from modelyard.llm.engine import Generation
from modelyard.llm.handover import Detokenizer, TokenHandover, stream_chunks
from modelyard.llm.params import GenerateParams

# a toy byte-level vocabulary: ids are UTF-8 bytes, so a character may take several tokens
decode = lambda ids: bytes(ids).decode("utf-8", "replace")  # noqa: E731


def generation() -> Generation:
    return Generation(prompt_tokens=1, max_tokens=64, params=GenerateParams())


def test_a_character_split_across_tokens_comes_out_whole_and_ends_count():
    gen = generation()
    detok = Detokenizer(decode, {0}, gen)
    texts = [detok.text_of(t) for t in "hé!".encode()] + [detok.text_of(0)]
    assert texts == ["h", "", "é", "!", ""] and "".join(texts) == "hé!"
    assert gen.completion_tokens == 5 and gen.finish_reason == "stop"


def test_tokens_handed_over_together_make_one_chunk_and_an_early_close_cancels():
    gen = generation()
    handover = TokenHandover(window=10.0)  # a long window: what is put before a take is one group
    handover.put(list(b"ab"))
    handover.put(list(b"c"))
    chunks = stream_chunks(handover, Detokenizer(decode, set(), gen), gen)
    assert next(chunks) == ["a", "b", "c"]
    chunks.close()  # the client left
    assert gen.cancelled.is_set()


def test_window_zero_makes_every_token_its_own_chunk_until_the_end():
    gen = generation()
    handover = TokenHandover(window=0)
    handover.put(list(b"xy"))
    threading.Timer(0.05, handover.end).start()
    assert list(stream_chunks(handover, Detokenizer(decode, set(), gen), gen)) == [["x"], ["y"]]
