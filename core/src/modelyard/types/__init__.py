"""Model types: a registration schema plus the abilities (worker methods) a model of that type has.

Registration schemas accept Xinference's version-2 custom-model JSON unchanged: unknown keys are
kept, and the fields Xinference types as "string or list" accept both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, model_validator

from modelyard.errors import InvalidRequest

StrOrList = Union[str, list[str]]
# Model names and uids appear in paths, logs and file names: long ones are refused.
MAX_NAME_LENGTH = 200


def check_name_length(field_name: str, value: str) -> None:
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{field_name} is {len(value)} characters long; the most is {MAX_NAME_LENGTH}.")


class VirtualEnvSettings(BaseModel):
    """The `virtualenv` block of a registration: packages for the model's own environment."""

    model_config = ConfigDict(extra="allow")

    packages: list[str] = []
    inherit_pip_config: bool = True
    index_url: str | None = None
    extra_index_url: StrOrList | None = None
    find_links: StrOrList | None = None
    trusted_host: StrOrList | None = None
    no_build_isolation: bool | None = None


class ModelSpec(BaseModel):
    """One way to get a model: format, size, quantization and where its files are."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_format: str | None = None
    model_size_in_billions: int | float | str | None = None
    quantization: str | None = None
    model_id: str | None = None
    model_hub: str | None = "huggingface"
    model_uri: str | None = None
    model_revision: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _v1_quantizations(cls, data: Any) -> Any:
        # Version-1 templates list `quantizations`; version 2 names one `quantization` per spec.
        if isinstance(data, dict) and data.get("quantization") is None:
            listed = data.get("quantizations")
            if isinstance(listed, list) and listed:
                data = {**data, "quantization": listed[0]}
        return data


class Registration(BaseModel):
    """Fields every model type's registration has."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_name: str
    model_description: str | None = None
    model_specs: list[ModelSpec] = []
    virtualenv: VirtualEnvSettings | None = None
    is_builtin: bool = False

    def model_uris(self) -> list[str]:
        """Every `model_uri` this registration names, top-level and per spec."""
        uris = [s.model_uri for s in self.model_specs if s.model_uri]
        top = getattr(self, "model_uri", None)
        if isinstance(top, str) and top:
            uris.append(top)
        return uris

    def abilities(self, model_type: ModelType) -> list[str]:
        declared = getattr(self, "model_ability", None)
        if isinstance(declared, list) and declared:
            return list(declared)
        return list(model_type.abilities)


class MediaRegistration(Registration):
    """Xinference's image, audio and video templates are flat: no `model_specs` list."""

    version: int | None = None
    model_family: str | None = None
    model_id: str | None = None
    model_revision: str | None = None
    model_hub: str | None = "huggingface"
    model_uri: str | None = None
    model_ability: list[str] = []
    default_model_config: dict[str, Any] = {}


def json_object(value: Any, field_name: str) -> dict[str, Any]:
    """A field Xinference stores as a JSON string holding an object: accept the string or the object."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{field_name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{field_name} must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ModelType:
    """A model type: `name`, its registration schema, its abilities and the HTTP routes serving them."""

    name: str
    schema: type[Registration]
    abilities: tuple[str, ...]
    routes: tuple[str, ...] = ()
    uses_engine: bool = True

    def parse(self, data: dict[str, Any]) -> Registration:
        return self.schema.model_validate(data)

    def methods(self, registration: Registration) -> list[str]:
        """The worker methods a model of this type answers: the abilities its registration declares
        (when it declares any of this type's), else all of this type's."""
        declared = [a for a in registration.abilities(self) if a in self.abilities]
        return declared or list(self.abilities)
