"""Flexible: any Python inference code behind `infer(*args, **kwargs)` (/v1/flexible/infers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from modelyard.errors import InvalidRequest
from modelyard.types import ModelType, Registration, Runner, Selection, json_object

if TYPE_CHECKING:
    from modelyard.plugins import Plugins


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


class FlexibleType(ModelType):
    """Flexible models run their launcher, never an engine: this is the one place that says so."""

    def resolve(self, plugins: Plugins, registration: Registration, selection: Selection) -> Runner:
        given = list(selection.selectors())
        if given:
            raise InvalidRequest(f"{', '.join(given)} select among model specs, and {self.name} "
                                 "models have none; leave them out.")
        if selection.engine is not None:
            raise InvalidRequest(f"{self.name} models run their launcher, not an engine; leave model_engine out.")
        assert isinstance(registration, FlexibleRegistration)
        name = registration.launcher
        if plugins.names_import_path(name):
            return Runner("launcher", name, name)  # the gates allowed the path; the worker imports it
        launcher = plugins.launcher(name)  # a bare name must be registered
        return Runner("launcher", name, launcher.import_path, launcher.plugin, requirements=launcher.requirements)


FLEXIBLE = FlexibleType(
    name="flexible",
    schema=FlexibleRegistration,
    abilities=("infer",),
    routes=("/v1/flexible/infers",),
    uses_engine=False,
)
