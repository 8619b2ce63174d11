"""Opening a GGUF with llama-cpp-python: the launch options both engines share, and llama.cpp's
own words when it refuses a file. Imported only inside the worker process."""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard.types.engine import flag_option
from modelyard_engine_llamacpp.files import context_length, gguf_file

DEFAULT_MAX_CONTEXT = 32768  # a model's own context can be 128k tokens: its KV cache would not fit a small machine

LAUNCH_OPTIONS = {
    "n_ctx": "context tokens (default: the model's context length, at most MODELYARD_LLAMACPP_MAX_CTX)",
    "n_threads": "threads for generation (default MODELYARD_TORCH_THREADS, else half the cores)",
    "n_threads_batch": "threads for the prompt (default n_threads)",
    "n_gpu_layers": "layers on the GPU (0: none; -1: all, with a GPU build of llama-cpp-python)",
    "flash_attn": "use flash attention",
    "use_mmap": "map the file rather than read it",
}

# ggml's log levels (ggml.h): what is kept to explain a refusal
_WARN, _ERROR, _CONTINUED = 3, 4, 5


class LlamaLog:
    """llama.cpp's recent warnings and errors, kept in memory: with `verbose=False` llama-cpp-python
    sends its log nowhere, yet a refused file is explained only there."""

    def __init__(self, keep: int = 20) -> None:
        self.lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=keep)
        self.lock = threading.Lock()
        self.level = 0

    def record(self, level: int, text: bytes, _user_data: Any) -> None:
        line = text.decode("utf-8", "replace")
        with self.lock:
            if level == _CONTINUED:
                level = self.level
                if self.lines and self.lines[-1][0] == level:
                    self.lines[-1] = (level, self.lines[-1][1] + line)
                    return
            self.level = level
            if level in (_WARN, _ERROR):
                self.lines.append((level, line))
        if level == _ERROR:
            sys.__stderr__.write(line)  # the worker's log, where loading did not silence it

    def errors(self) -> str:
        with self.lock:
            found = [line.strip() for level, line in self.lines if level == _ERROR]
            self.lines.clear()
        return "; ".join(found)


_log: LlamaLog | None = None
_callback: Any = None  # ctypes must keep the callback alive for as long as llama.cpp may call it


def llama_log() -> LlamaLog:
    global _log, _callback
    if _log is None:
        import llama_cpp

        _log = LlamaLog()
        _callback = llama_cpp.llama_log_callback(_log.record)
        llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    return _log


def default_threads() -> int:
    return config.torch_threads() or max(1, (os.cpu_count() or 2) // 2)


def open_gguf(model_path: str, spec: Any, options: dict[str, Any], default_ctx: int | None, *,
              whole_batches: bool = False, **extra: Any) -> Any:
    """A `llama_cpp.Llama` for the spec's GGUF file, with the shared launch `options` (taken out of
    `options`) and the engine's own `extra` keywords. The context is `n_ctx`, else `default_ctx`,
    else the GGUF's own, at most the cap; `whole_batches` makes a batch as long as the context (an
    embedding reads its input in one). A file llama.cpp refuses is a 400 in its words."""
    from llama_cpp import Llama

    path = gguf_file(model_path, spec)
    for name in ("n_ctx", "n_threads", "n_threads_batch", "n_gpu_layers", "n_batch"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (-1 if name == "n_gpu_layers" else 1)):
            raise InvalidRequest(f"Launch option {name} must be a whole number"
                                 f"{' (-1: all layers)' if name == 'n_gpu_layers' else ' above 0'}, got {value!r}.")
    for name in ("flash_attn", "use_mmap"):
        if name in options:
            flag_option(options[name], name)
    threads = options.pop("n_threads", None) or default_threads()
    cap = int(os.environ.get("MODELYARD_LLAMACPP_MAX_CTX") or DEFAULT_MAX_CONTEXT)
    n_ctx = options.pop("n_ctx", None) or min(default_ctx or context_length(path) or cap, cap)
    if whole_batches:
        extra.update(n_batch=n_ctx, n_ubatch=n_ctx)
    log = llama_log()
    log.errors()  # forget what an earlier load said
    try:
        return Llama(model_path=path, n_ctx=n_ctx, n_threads=threads,
                     n_threads_batch=options.pop("n_threads_batch", None) or threads,
                     n_gpu_layers=options.pop("n_gpu_layers", 0), verbose=False, **options, **extra)
    except ValueError as exc:
        said = log.errors()
        raise InvalidRequest(f"llama.cpp could not load {path}: {exc}" + (f" (llama.cpp: {said})" if said else "")
                             ) from None
