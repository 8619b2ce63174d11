"""Request bodies of the OpenAI-compatible routes. Parameters not named here pass through to the
engine, which answers 400 naming any it cannot honour."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The uid of a running LLM.")
    messages: list[dict[str, Any]]
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    def generate_config(self) -> dict[str, Any]:
        return {"stream": bool(self.stream), **(self.model_extra or {})}


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The uid of a running LLM.")
    prompt: str | list[str]
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    def generate_config(self) -> dict[str, Any]:
        return {"stream": bool(self.stream), **(self.model_extra or {})}
