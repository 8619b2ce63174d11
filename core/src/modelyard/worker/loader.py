"""Inside the worker: turn a launch request into a loaded model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard import download
from modelyard.errors import LaunchFailed, ModelyardError
from modelyard.plugins import Plugins, get_plugins, import_object
from modelyard.registry import local_path
from modelyard.types import ModelSpec
from modelyard.types.flexible import FlexibleRegistration

Progress = Callable[[str, float, str], None]


@dataclass
class LoadedModel:
    model: Any
    abilities: list[str]
    info: dict[str, Any]


def _import(kind: str, runner: dict[str, Any]) -> Any:
    try:
        return import_object(runner["impl"])
    except Exception as exc:
        raise LaunchFailed(f"Cannot import {kind} {runner['name']!r} ({runner['impl']}): "
                           f"{type(exc).__name__}: {exc}") from exc


def load_flexible(launch: dict[str, Any], progress: Progress) -> LoadedModel:
    registration = FlexibleRegistration.model_validate(launch["registration"])
    if launch.get("model_path"):
        registration.model_uri = launch["model_path"]
    # Launch-time arguments override the registration's launcher_args (Xinference does the reverse).
    kwargs = {**registration.launcher_kwargs(), **launch.get("kwargs", {})}
    runner = launch["runner"]
    launcher = _import("launcher", runner)
    if not callable(launcher):
        raise LaunchFailed(f"Launcher {runner['impl']!r} is a {type(launcher).__name__}, not a function")
    progress("loading", 0.85, f"calling launcher {registration.launcher}")
    try:
        model = launcher(model_uid=launch["model_uid"], model_spec=registration, **kwargs)
    except ModelyardError:
        raise
    except Exception as exc:
        raise LaunchFailed(f"Launcher {registration.launcher!r} raised {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(model, "infer", None)):
        raise LaunchFailed(f"Launcher {registration.launcher!r} returned a {type(model).__name__}, "
                           "which has no infer() method; return a modelyard.flexible.FlexibleModel")
    try:
        model.load()
    except ModelyardError:
        raise
    except Exception as exc:
        raise LaunchFailed(f"{type(model).__name__}.load() raised {type(exc).__name__}: {exc}") from exc
    return LoadedModel(model, ["infer"], {"launcher": registration.launcher})


def load_with_engine(launch: dict[str, Any], plugins: Plugins, progress: Progress) -> LoadedModel:
    """The engine class travels in the launch as an import path: the worker does not look it up
    again by name, so what it loads is what the server chose."""
    model_type = plugins.model_type(launch["model_type"])
    registration = model_type.parse(launch["registration"])
    runner = launch["runner"]
    name = runner["name"]
    spec = ModelSpec.model_validate(launch["spec"])
    path = launch.get("model_path")
    if not path and spec.model_uri:
        local = local_path(spec.model_uri)
        path = str(local) if local is not None else spec.model_uri
    if not path:
        path = download.fetch(spec, progress, runner.get("files"))
    cls = _import("engine", runner)
    progress("loading", 0.85, f"loading {path} with {name}")
    try:
        model = cls(launch["model_uid"], registration, spec, path, **launch.get("kwargs", {}))
        model.load()
    except ModelyardError:
        raise
    except Exception as exc:
        raise LaunchFailed(f"Engine {name!r} could not load {path}: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(model, model_type.methods(registration), {"engine": name, "model_path": path})


def load_model(launch: dict[str, Any], progress: Progress) -> LoadedModel:
    if launch["runner"]["kind"] == "launcher":
        # the launcher travels as an import path: no plugin needs loading (a restart is sooner back)
        return load_flexible(launch, progress)
    progress("loading", 0.75, "importing plugins")
    return load_with_engine(launch, get_plugins(), progress)
