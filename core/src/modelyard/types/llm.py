"""LLM: chat and text generation (OpenAI's /v1/chat/completions and /v1/completions)."""

from __future__ import annotations

from pydantic import Field

from modelyard.types import ModelSpec, ModelType, Registration


class LLMRegistration(Registration):
    version: int | None = None
    context_length: int = 2048
    model_lang: list[str] = []
    model_ability: list[str] = ["chat"]
    model_family: str | None = None
    model_specs: list[ModelSpec] = Field(min_length=1)
    chat_template: str | None = None
    stop_token_ids: list[int] | None = None
    stop: list[str] | None = None
    reasoning_start_tag: str | None = None
    reasoning_end_tag: str | None = None


class LLMType(ModelType):
    def methods(self, registration: Registration) -> list[str]:
        # every LLM completes text; chat needs the chat ability (a chat template)
        return ["chat", "generate"] if "chat" in registration.abilities(self) else ["generate"]


LLM = LLMType(
    name="LLM",
    schema=LLMRegistration,
    abilities=("chat", "generate"),
    routes=("/v1/chat/completions", "/v1/completions"),
)
