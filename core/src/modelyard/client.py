"""The Python client: every native route as a method; errors raise modelyard's own exceptions.

    from modelyard.client import Client
    client = Client("http://127.0.0.1:9997")
    uid = client.launch_model("my-flexible-model", model_type="flexible")
    client.get_model(uid).infer("I feel nice and am happy today")
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from modelyard import config
from modelyard.errors import rebuild_error

# A launch returns when the model is ready; loading a large model takes minutes.
LAUNCH_TIMEOUT = 3600.0
CALL_TIMEOUT = 600.0


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
        message = body.get("detail") or body.get("error", {}).get("message") or response.text
        error_type = (body.get("error") or {}).get("type")
    except (ValueError, AttributeError):
        message, error_type = response.text or response.reason_phrase, None
    raise rebuild_error(error_type, response.status_code, str(message))


class ModelHandle:
    """A running model; subclasses add the calls of its model type."""

    def __init__(self, client: Client, model_uid: str, description: dict[str, Any]):
        self.client = client
        self.model_uid = model_uid
        self.description = description

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_uid!r}>"


class FlexibleModelHandle(ModelHandle):
    def infer(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model's `infer(*args, **kwargs)` and return its JSON result."""
        return self.client._request("POST", "/v1/flexible/infers",
                                    json={"model": self.model_uid, "args": list(args), **kwargs},
                                    timeout=CALL_TIMEOUT)


def _sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON events of a server-sent event stream, until `data: [DONE]`; an in-band error raises."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            error = event["error"]
            raise rebuild_error(error.get("type"), int(error.get("code") or 500), error.get("message", str(error)))
        yield event


class GenerateModelHandle(ModelHandle):
    """An LLM: `generate(prompt)`; with `generate_config={"stream": True}` an iterator of chunks."""

    def _post(self, path: str, body: dict[str, Any], generate_config: dict[str, Any] | None) -> Any:
        body = {"model": self.model_uid, **body, **(generate_config or {})}
        if not body.get("stream"):
            return self.client._request("POST", path, json=body, timeout=CALL_TIMEOUT)
        return self._stream(path, body)

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self.client._http.stream("POST", path, json=body, timeout=CALL_TIMEOUT) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for_error(response)
            yield from _sse_events(response)

    def generate(self, prompt: str, generate_config: dict[str, Any] | None = None) -> Any:
        return self._post("/v1/completions", {"prompt": prompt}, generate_config)


class ChatModelHandle(GenerateModelHandle):
    """A chat LLM: `chat(messages)` as well as `generate(prompt)`."""

    def chat(self, messages: list[dict[str, Any]], generate_config: dict[str, Any] | None = None) -> Any:
        return self._post("/v1/chat/completions", {"messages": messages}, generate_config)


class EmbeddingModelHandle(ModelHandle):
    def create_embedding(self, input: str | list[str] | list[int] | list[list[int]], **kwargs: Any) -> dict[str, Any]:
        """OpenAI's embeddings object for `input`; `kwargs`: `encoding_format`, `dimensions`, ..."""
        return self.client._request("POST", "/v1/embeddings", json={"model": self.model_uid, "input": input, **kwargs},
                                    timeout=CALL_TIMEOUT)


class RerankModelHandle(ModelHandle):
    def rerank(self, documents: list[str], query: str, top_n: int | None = None,
               max_chunks_per_doc: int | None = None, return_documents: bool | None = None,
               return_len: bool | None = None, **kwargs: Any) -> dict[str, Any]:
        """`{"results": [{"index", "relevance_score", "document"}], "meta": {...}}`, best first; the
        arguments in xinference-client's order."""
        body = {"model": self.model_uid, "documents": documents, "query": query, "top_n": top_n,
                "max_chunks_per_doc": max_chunks_per_doc, "return_documents": return_documents,
                "return_len": return_len, **kwargs}
        return self.client._request("POST", "/v1/rerank", json=body, timeout=CALL_TIMEOUT)


def _handle_class(description: dict[str, Any]) -> type[ModelHandle]:
    if description["model_type"] == "LLM":
        return ChatModelHandle if "chat" in description.get("model_ability", []) else GenerateModelHandle
    return {"flexible": FlexibleModelHandle, "embedding": EmbeddingModelHandle,
            "rerank": RerankModelHandle}.get(description["model_type"], ModelHandle)


class Client:
    """`api_key` (default `MODELYARD_API_KEY`) is sent as `Authorization: Bearer <key>`."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, timeout: float = 60.0):
        self.base_url = (base_url or config.endpoint()).rstrip("/")
        api_key = api_key or config.api_key()
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        extra = {"timeout": timeout} if timeout is not None else {}
        response = self._http.request(method, path, **kwargs, **extra)
        _raise_for_error(response)
        return response.json()

    # -- server ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/status")

    def list_plugins(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/plugins")["plugins"]

    # -- registrations --------------------------------------------------------------------

    def register_model(self, model_type: str, model: str | dict[str, Any], persist: bool = False) -> dict[str, Any]:
        """Register a custom model from its JSON definition (a string or a dict)."""
        if not isinstance(model, str):
            model = json.dumps(model)
        return self._request("POST", f"/v1/model_registrations/{model_type}",
                             json={"model": model, "persist": persist})

    def list_model_registrations(self, model_type: str, detailed: bool = False) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/model_registrations/{model_type}",
                             params={"detailed": str(detailed).lower()})

    def get_model_registration(self, model_type: str, model_name: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/model_registrations/{model_type}/{model_name}")

    def unregister_model(self, model_type: str, model_name: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/model_registrations/{model_type}/{model_name}")

    # -- running models -------------------------------------------------------------------

    def launch_model(self, model_name: str, model_type: str = "LLM", model_uid: str | None = None,
                     model_engine: str | None = None, model_path: str | None = None,
                     wait_ready: bool = True, **kwargs: Any) -> str:
        """Launch a model; extra keyword arguments go to its launcher or engine. Returns its uid."""
        body = {"model_name": model_name, "model_type": model_type, "model_uid": model_uid,
                "model_engine": model_engine, "model_path": model_path, **kwargs}
        return self._request("POST", "/v1/models", json=body, params={"wait_ready": str(wait_ready).lower()},
                             timeout=LAUNCH_TIMEOUT)["model_uid"]

    def list_models(self) -> dict[str, dict[str, Any]]:
        """Running models by uid."""
        return {m["id"]: m for m in self._request("GET", "/v1/models")["data"]}

    def describe_model(self, model_uid: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/models/{model_uid}")

    def get_launch_progress(self, model_uid: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/models/{model_uid}/progress")

    def get_model(self, model_uid: str) -> ModelHandle:
        """A handle whose methods call the model: `infer` for flexible models, `chat` and `generate` for LLMs."""
        description = self.describe_model(model_uid)
        return _handle_class(description)(self, model_uid, description)

    def terminate_model(self, model_uid: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/models/{model_uid}")

    def model_logs(self, model_uid: str, lines: int = 100) -> str:
        return self._request("GET", f"/v1/models/{model_uid}/logs", params={"lines": lines})["lines"]

    # -- virtualenvs ----------------------------------------------------------------------

    def list_virtualenvs(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/virtualenvs")["list"]

    def remove_virtualenv(self, key: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/virtualenvs/{key}")

    def prune_virtualenvs(self) -> list[str]:
        return self._request("POST", "/v1/virtualenvs/prune")["removed"]

    # -- API keys (admin) -----------------------------------------------------------------

    def create_key(self, scopes: list[str], models: list[str] | None = None, expires_in: str | float | None = None,
                   name: str | None = None) -> dict[str, Any]:
        """A new key: its `key` value is in this answer only."""
        return self._request("POST", "/v1/keys", json={"scopes": scopes, "models": models or [],
                                                       "expires_in": expires_in, "name": name})

    def list_keys(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/keys")["keys"]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/keys/{key_id}")
