"""Which thread writes a call's answer to the link: the call's own thread when no other call is in
flight or the model runs one call at a time, else the event loop (which keeps many threads from
contending for the link)."""

import asyncio
import json
import threading

import msgpack

from modelyard.worker import main as worker_main
from modelyard.worker import protocol as p
from modelyard.worker.loader import LoadedModel


class ThreadRecordingSocket:
    """Stands in for the worker's socket: records each message written, with the writing thread."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, list]] = []

    def send(self, data) -> int:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(bytes(data))
        self.messages += [(threading.get_ident(), message) for message in unpacker]
        return len(data)


class Model:
    def __init__(self, concurrency=None):
        self.concurrency = concurrency
        self.gates = {name: threading.Event() for name in ("a", "b")}

    def infer(self, name):
        self.gates[name].wait(10)
        return {"name": name}

    def chat(self, name):
        """A sync method that returns an async generator (as the LLM bases' do): the loop drains it."""
        async def items():
            yield {"name": name}
        return items()


def answered(sock: ThreadRecordingSocket) -> dict[str, int]:
    """The answered calls' names, each with the thread that wrote the answer."""
    return {json.loads(message[2])["name"]: thread for thread, message in sock.messages if message[0] == p.RESULT}


async def serve(model: Model, monkeypatch) -> tuple[worker_main.Worker, ThreadRecordingSocket]:
    monkeypatch.setattr(worker_main, "load_model", lambda launch, progress: LoadedModel(model, ["infer", "chat"], {}))
    sock = ThreadRecordingSocket()
    worker = worker_main.Worker(p.Sender(sock))
    assert await worker.load({})
    return worker, sock


async def until(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_the_only_call_in_flight_is_answered_from_its_thread(monkeypatch):
    async def main():
        model = Model()
        worker, sock = await serve(model, monkeypatch)
        model.gates["a"].set()
        worker.dispatch([p.CALL, 1, "infer", ["a"], {}, p.MODE_JSON])
        await until(lambda: "a" in answered(sock))
        assert answered(sock)["a"] != threading.get_ident()
    asyncio.run(main())


def test_with_another_call_in_flight_the_loop_writes_the_answer(monkeypatch):
    async def main():
        model = Model()
        worker, sock = await serve(model, monkeypatch)
        worker.dispatch([p.CALL, 1, "infer", ["a"], {}, p.MODE_JSON])
        worker.dispatch([p.CALL, 2, "infer", ["b"], {}, p.MODE_JSON])
        await asyncio.sleep(0.05)
        model.gates["a"].set()  # "b" still runs
        await until(lambda: "a" in answered(sock))
        assert answered(sock)["a"] == threading.get_ident()
        await until(lambda: len(worker.tasks) == 1)
        model.gates["b"].set()  # alone now
        await until(lambda: "b" in answered(sock))
        assert answered(sock)["b"] != threading.get_ident()
    asyncio.run(main())


def test_a_model_that_runs_one_call_at_a_time_answers_from_its_thread_with_calls_waiting(monkeypatch):
    async def main():
        model = Model(concurrency=1)
        worker, sock = await serve(model, monkeypatch)
        worker.dispatch([p.CALL, 1, "infer", ["a"], {}, p.MODE_JSON])
        worker.dispatch([p.CALL, 2, "infer", ["b"], {}, p.MODE_JSON])  # waits for its turn
        await asyncio.sleep(0.05)
        model.gates["b"].set()
        model.gates["a"].set()
        await until(lambda: {"a", "b"} <= set(answered(sock)))
        assert threading.get_ident() not in answered(sock).values()
        assert [json.loads(m[2])["name"] for _, m in sock.messages if m[0] == p.RESULT] == ["a", "b"]
    asyncio.run(main())


def test_an_async_generator_from_a_sync_method_is_collected_on_the_loop(monkeypatch):
    async def main():
        worker, sock = await serve(Model(), monkeypatch)
        worker.dispatch([p.CALL, 1, "chat", ["c"], {}, p.MODE_JSON])
        await until(lambda: any(m[0] in (p.RESULT, p.ERROR) for _, m in sock.messages))
        [(thread, message)] = [(t, m) for t, m in sock.messages if m[0] in (p.RESULT, p.ERROR)]
        assert message[0] == p.RESULT and json.loads(message[2]) == [{"name": "c"}], message
        assert thread == threading.get_ident()
    asyncio.run(main())
