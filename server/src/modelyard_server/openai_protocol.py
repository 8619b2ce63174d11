"""Request bodies of the OpenAI-compatible routes. Parameters not named here pass through to the
engine, which answers 400 naming any it cannot honour."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    include_usage: bool = False


class LLMRequest(BaseModel):
    """What chat and text completions share: the model, streaming, and pass-through parameters."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The uid of a running LLM.")
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    def generate_config(self) -> dict[str, Any]:
        """The engine's parameters; `stream` is not one: the route streams or collects the same chunks."""
        return dict(self.model_extra or {})

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(LLMRequest):
    messages: list[dict[str, Any]]


class CompletionRequest(LLMRequest):
    prompt: str | list[str]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. `input`: a string, a list of strings, a list of token ids, or a
    list of those lists; the engine checks its form and answers 400 naming what is wrong."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The uid of a running embedding model.")
    input: Any = Field(description="A string, a list of strings, a list of token ids, or a list of token-id lists.")
    encoding_format: str = Field("float", description="float, or base64 (little-endian float32 bytes).")
    dimensions: int | None = Field(None, description="Shorter vectors, where the model was trained for them.")
    user: str | None = None

    def engine_params(self) -> dict[str, Any]:
        """What the engine gets beside the input: `dimensions`, and anything else sent (it refuses by name
        what it cannot honour); `user` is the caller's own tag and goes nowhere."""
        return {**({"dimensions": self.dimensions} if self.dimensions is not None else {}),
                **(self.model_extra or {})}
