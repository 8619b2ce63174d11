"""Flexible: any Python inference code behind `infer(*args, **kwargs)` (/v1/flexible/infers)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from modelyard.types import ModelType, Registration, json_object


class FlexibleRegistration(Registration):
    """`launcher` is a registered launcher name or a dotted import path (`my_module.launcher`).

    `model_uri` goes to the launcher as it is: a flexible model decides what its path means, so
    it is not checked for existence (Xinference does the same). `launcher_args` is a JSON object,
    given as a string (Xinference's form) or as an object.
    """

    version: int | None = None
    model_id: str | None = None
    model_revision: str | None = None
    model_hub: str | None = "huggingface"
    model_uri: str | None = None
    launcher: str
    launcher_args: str | dict[str, Any] | None = None

    @field_validator("launcher")
    @classmethod
    def _launcher_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("launcher must name a registered launcher or a dotted import path")
        return value.strip()

    @field_validator("launcher_args")
    @classmethod
    def _launcher_args_object(cls, value: Any) -> Any:
        json_object(value, "launcher_args")
        return value

    def launcher_kwargs(self) -> dict[str, Any]:
        return json_object(self.launcher_args, "launcher_args")

    def model_uris(self) -> list[str]:
        return []


FLEXIBLE = ModelType(
    name="flexible",
    schema=FlexibleRegistration,
    abilities=("infer",),
    routes=("/v1/flexible/infers",),
    uses_engine=False,
)
