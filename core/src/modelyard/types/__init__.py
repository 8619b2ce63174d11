"""Model types: a registration schema, the abilities (worker methods) a model of that type has, and
launch resolution: how a registration becomes specs, and a launch one runner.

Registration schemas accept Xinference's version-2 custom-model JSON unchanged: unknown keys are
kept, and the fields Xinference types as "string or list" accept both. Xinference's builtin
catalogue nests where files come from in `model_src.{huggingface,modelscope}` (per spec for LLMs,
embeddings and rerankers; at the top for image, audio and video, whose custom templates are flat):
every form turns into the same list of specs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, model_validator

from modelyard.errors import InvalidRequest

if TYPE_CHECKING:
    from modelyard.plugins import Plugins

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



SOURCE_KEYS = ("model_id", "model_revision", "model_uri", "quantization", "quantizations",
               "model_file_name_template", "model_file_name_split_template", "quantization_parts")


def expand_spec(data: Any) -> list[Any]:
    """One spec as written (with `model_src` per hub, or `quantizations` listing several) as the
    flat specs it stands for: one per hub and quantization."""
    if not isinstance(data, dict):
        return [data]
    sources = data.get("model_src")
    if isinstance(sources, dict) and sources:
        base = {k: v for k, v in data.items() if k != "model_src"}
        out = []
        for hub, source in sources.items():
            if isinstance(source, dict):
                out += expand_spec({**base, **source, "model_hub": hub})
        return out
    listed = data.get("quantizations")
    if data.get("quantization") is None and isinstance(listed, list) and listed:
        rest = {k: v for k, v in data.items() if k != "quantizations"}
        return [{**rest, "quantization": q} for q in listed]
    return [data]


class Registration(BaseModel):
    """Fields every model type's registration has."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_name: str
    model_description: str | None = None
    model_specs: list[ModelSpec] = []
    virtualenv: VirtualEnvSettings | None = None
    is_builtin: bool = False

    @model_validator(mode="before")
    @classmethod
    def _flat_specs(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("model_specs"), list):
            data = {**data, "model_specs": [flat for spec in data["model_specs"] for flat in expand_spec(spec)]}
        return data

    def specs(self) -> list[ModelSpec]:
        """The ways to get this model, one per format, size, quantization and hub."""
        return list(self.model_specs)

    def model_uris(self) -> list[str]:
        """Every `model_uri` this registration names, top-level and per spec."""
        uris = [s.model_uri for s in self.specs() if s.model_uri]
        top = getattr(self, "model_uri", None)
        if isinstance(top, str) and top:
            uris.append(top)
        return list(dict.fromkeys(uris))

    def abilities(self, model_type: ModelType) -> list[str]:
        declared = getattr(self, "model_ability", None)
        if isinstance(declared, list) and declared:
            return list(declared)
        return list(model_type.abilities)


class FlatRegistration(Registration):
    """A registration that may be flat: its one source at the top level (`model_id`, `model_uri`,
    `model_src`) instead of a `model_specs` list, as Xinference's image, audio, video and classic
    embedding templates are."""

    model_id: str | None = None
    model_revision: str | None = None
    model_hub: str | None = "huggingface"
    model_uri: str | None = None
    #: The format a flat registration's one spec has when it names none.
    flat_format: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _flat_source(cls, data: Any) -> Any:
        if cls.flat_format and isinstance(data, dict) and not data.get("model_specs"):
            if not any(data.get(k) for k in ("model_id", "model_uri", "model_src")):
                raise ValueError("give model_specs, or the model's model_id or model_uri at the top level")
            data = {**data, "model_format": data.get("model_format") or cls.flat_format}
        return data

    def specs(self) -> list[ModelSpec]:
        if self.model_specs:
            return list(self.model_specs)
        top = {k: v for k, v in (self.model_extra or {}).items()
               if k in SOURCE_KEYS or k in ("model_src", "model_format")}
        flat = {"model_id": self.model_id, "model_revision": self.model_revision, "model_hub": self.model_hub,
                "model_uri": self.model_uri, **top}
        return [ModelSpec.model_validate(each) for each in expand_spec(flat)]


class MediaRegistration(FlatRegistration):
    """Xinference's image, audio and video templates are flat: no `model_specs` list."""

    version: int | None = None
    model_family: str | None = None
    model_ability: list[str] = []
    default_model_config: dict[str, Any] = {}


def a_model_of(model_type: str) -> str:
    """"an embedding model", "a flexible model", "an LLM model": for messages."""
    return f"{'an' if model_type[:1].lower() in 'aeiou' or model_type == 'LLM' else 'a'} {model_type} model"


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


def _exists(path: str) -> bool:
    try:
        return Path(path).expanduser().exists()
    except (RuntimeError, OSError, ValueError):  # ~nosuchuser, a name too long, a NUL byte
        return False


@dataclass(frozen=True)
class Selection:
    """What a launch asks for, besides the model: the selectors Xinference's launch sends."""

    engine: str | None = None
    model_format: str | None = None
    size: Any = None
    quantization: str | None = None
    hub: str | None = None
    model_path: str | None = None

    def selectors(self) -> dict[str, Any]:
        """The spec selectors given, by their launch-request names."""
        named = {"model_format": self.model_format, "model_size_in_billions": self.size,
                 "quantization": self.quantization, "download_hub": self.hub}
        return {k: v for k, v in named.items() if v is not None}


@dataclass(frozen=True)
class Runner:
    """What runs a launched model: an engine class or a flexible launcher, by import path. The
    server resolves it once; the launch message carries it, and the worker imports `impl`."""

    kind: str  # "engine" or "launcher"
    name: str
    impl: str
    plugin: str = ""
    spec: ModelSpec | None = None
    requirements: tuple[str, ...] = ()
    excluded_packages: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    files: tuple[str, ...] | None = None  # the hub files it needs; None: all of them

    def as_message(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "impl": self.impl, "plugin": self.plugin,
                "files": list(self.files) if self.files is not None else None}


@dataclass(frozen=True)
class ModelType:
    """A model type: `name`, its registration schema, its worker methods, the abilities that map to
    them, and the HTTP routes serving them.

    `ability_methods` maps Xinference's ability vocabulary to this type's methods (`text2image` ->
    `text_to_image`); declared abilities that name no method (`tools`, `vision`, `reasoning`, ...)
    are kept and shown. A method's own name counts as its ability too.
    """

    name: str
    schema: type[Registration]
    abilities: tuple[str, ...]
    routes: tuple[str, ...] = ()
    uses_engine: bool = True
    ability_methods: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def parse(self, data: dict[str, Any]) -> Registration:
        return self.schema.model_validate(data)

    def specs(self, registration: Registration) -> list[ModelSpec]:
        return registration.specs()

    def methods(self, registration: Registration) -> list[str]:
        """The worker methods a model of this type answers: those its declared abilities map to
        (when any does), else all of this type's."""
        mapping = {**{m: m for m in self.abilities}, **self.ability_methods}
        declared = [mapping[a] for a in registration.abilities(self) if a in mapping]
        return list(dict.fromkeys(declared)) or list(self.abilities)

    def resolve(self, plugins: Plugins, registration: Registration, selection: Selection) -> Runner:
        """The one runner a launch uses, or a 4xx saying why there is none. Nothing is spawned yet."""
        from modelyard import engines

        engine, spec = engines.select(plugins, self.name, registration, self.specs(registration),
                                      engine_name=selection.engine, model_format=selection.model_format,
                                      size=selection.size, quantization=selection.quantization, hub=selection.hub)
        if selection.model_path is not None and not _exists(selection.model_path):
            raise InvalidRequest(f"model_path {selection.model_path!r} does not exist on this machine.")
        return Runner("engine", engine.name, engine.impl, engine.plugin, spec, engine.requirements,
                      engine.excluded_packages, engine.constraints, engine.needed_files(registration, spec))
