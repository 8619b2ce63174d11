"""Request bodies of the native routes, separate from the logic that serves them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt

from modelyard.types import Selection


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorBody(BaseModel):
    """Every error answer: `detail` for Xinference clients, `error` for OpenAI clients."""

    detail: str
    error: ErrorDetail


_ERRORS = {
    400: "Bad input: the message says what to fix", 401: "No API key, or one that is not valid",
    403: "The key lacks the scope, or a setting forbids the request", 404: "No such model or registration",
    409: "It exists already, or is in use", 413: "The request body is over the route's limit",
    415: "The request body is not JSON", 421: "The Host header names another server",
    422: "The request body does not fit the route's schema", 500: "The model's own code raised",
    503: "The model cannot answer now (failed, unhealthy or still launching)",
}
# What every route may answer besides its success (the request guard and the handlers' errors).
ERROR_RESPONSES: dict[int | str, dict] = {status: {"model": ErrorBody, "description": text}
                                          for status, text in _ERRORS.items()}


class RegisterModelRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str | dict[str, Any]
    persist: bool = False
    worker_ip: str | None = None


class LaunchModelRequest(BaseModel):
    """POST /v1/models. Keys not named here go to the launcher or engine as keyword arguments."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_name: str
    model_type: str = "LLM"
    model_uid: str | None = None
    model_engine: str | None = None
    model_path: str | None = None
    model_format: str | None = None
    model_size_in_billions: int | float | str | None = None
    quantization: str | None = None
    download_hub: str | None = None
    envs: dict[str, str] | None = None
    # seconds the model may take to load, from its worker's start (default MODELYARD_LAUNCH_TIMEOUT)
    launch_timeout: float | None = None
    # "on-failure" (the default): a worker that dies is started again, with backoff and a bound;
    # "never": its model stays FAILED
    restart: str | None = None
    # false: a restart of the server does not launch this model again
    restore: bool | None = None
    # idle this long (seconds, or "10m"), the model is unloaded until a request names it again;
    # -1 never (default MODELYARD_KEEP_ALIVE), 0 after each request
    keep_alive: Any = None  # checked by the supervisor: pydantic would take true for 1 second
    # Launch parameters Xinference's client sends; modelyard accepts them when null (or trivially
    # satisfied) and answers 400 for a value it cannot honour yet.
    replica: StrictInt | None = None  # worker processes of the model; calls go to the least busy
    n_worker: int | None = None
    n_gpu: int | str | None = None
    gpu_idx: int | list[int] | None = None
    worker_ip: str | None = None
    request_limits: StrictInt | None = None  # the most requests in flight at once; the rest get a 429
    peft_model_config: dict[str, Any] | None = None
    replica_config: Any = None
    enable_thinking: bool | None = None
    enable_virtual_env: bool | None = None
    virtual_env_packages: list[str] | None = None
    virtual_env_find_links: list[str] | None = None

    def selection(self) -> Selection:
        """What this launch asks of its model's type's resolution."""
        return Selection(engine=self.model_engine, model_format=self.model_format, size=self.model_size_in_billions,
                         quantization=self.quantization, hub=self.download_hub, model_path=self.model_path)

    def unsupported(self) -> list[str]:
        """The Xinference launch parameters set to values modelyard cannot honour yet."""
        problems = []
        if self.n_worker not in (None, 1):
            problems.append("n_worker (only 1 worker per model is supported)")
        if self.worker_ip not in (None, "", "127.0.0.1", "localhost"):
            problems.append("worker_ip (this server runs every model on its own machine)")
        for name in ("peft_model_config", "replica_config", "enable_thinking"):
            if getattr(self, name) is not None:
                problems.append(f"{name} (not supported yet)")
        return problems


# POST /v1/flexible/infers reads its body by hand (the hot path), so its schema is declared here.
FLEXIBLE_INFER_BODY = {
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {"type": "string", "description": "The uid of a running flexible model.", "example": "echo"},
        "args": {"type": "array", "items": {}, "description": "Positional arguments of infer()."},
    },
    "additionalProperties": {"description": "Keyword arguments of infer()."},
}
# A route that answers JSON, or server-sent events when asked to stream.
JSON_OR_EVENTS = {200: {"description": "The answer; with streaming, server-sent events ending in `data: [DONE]`",
                        "content": {"application/json": {"schema": {}},
                                    "text/event-stream": {"schema": {}}}}}
