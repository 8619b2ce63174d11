"""How generated tokens reach the consuming thread: at once for a slow stream, grouped for a fast one."""

import threading
import time

import torch
from modelyard_engine_transformers.llm import _TokenQueue


class Consumer(threading.Thread):
    """Takes groups of tokens as the engine's consuming thread does, noting when each came."""

    def __init__(self, streamer: _TokenQueue) -> None:
        super().__init__(daemon=True)
        self.streamer = streamer
        self.taken: list[tuple[float, list[int]]] = []
        self.start()

    def run(self) -> None:
        while (tokens := self.streamer.take()) is not None:
            self.taken.append((time.monotonic(), tokens))

    def wait_for(self, groups: int) -> None:
        deadline = time.monotonic() + 5
        while len(self.taken) < groups and time.monotonic() < deadline:
            time.sleep(0.001)


def test_the_prompt_is_not_a_token_and_the_end_is_none():
    streamer = _TokenQueue(window=0.05)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt
    streamer.put(torch.tensor([7]))
    streamer.end()
    assert streamer.take() == [7]
    assert streamer.take() is None


def test_a_fast_stream_is_handed_over_in_groups_and_its_first_token_at_once():
    streamer = _TokenQueue(window=0.5)
    consumer = Consumer(streamer)
    streamer.put(torch.tensor([[0]]))
    streamer.put(torch.tensor([1]))
    consumer.wait_for(1)
    assert [group for _, group in consumer.taken] == [[1]]  # nothing to wait for yet
    for token in range(2, 11):
        streamer.put(torch.tensor([token]))
        time.sleep(0.002)
    time.sleep(0.05)
    assert len(consumer.taken) == 1  # the rest came within the window: they wait for more
    streamer.end()
    consumer.join(5)
    assert [group for _, group in consumer.taken] == [[1], list(range(2, 11))]


def test_a_slow_stream_hands_over_every_token_at_once():
    streamer = _TokenQueue(window=0.01)
    consumer = Consumer(streamer)
    streamer.put(torch.tensor([[0]]))
    for token in range(1, 4):
        time.sleep(0.03)  # the consumer is waiting by now
        put_at = time.monotonic()
        streamer.put(torch.tensor([token]))
        consumer.wait_for(token)
        assert consumer.taken[-1][1] == [token]
        assert consumer.taken[-1][0] - put_at < 0.5  # woken, not left until the next token
    streamer.end()
    consumer.join(5)
