"""Inside the worker: turn a launch request into a loaded model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelyard import download
from modelyard.errors import LaunchFailed
from modelyard.plugins import Plugins, import_object, is_import_path
from modelyard.registry import local_path
from modelyard.types import ModelSpec
from modelyard.types.flexible import FlexibleRegistration

Progress = Callable[[str, float, str], None]


@dataclass
class LoadedModel:
    model: Any
    abilities: list[str]
    info: dict[str, Any]


def resolve_launcher(name: str, plugins: Plugins) -> Callable[..., Any]:
    """A registered launcher name, else a dotted import path, imported here in the worker."""
    if name in plugins.launchers or not is_import_path(name):
        path = plugins.launcher(name).import_path  # raises with the plugin's error if it is broken
    else:
        path = name
    try:
        launcher = import_object(path)
    except Exception as exc:
        raise LaunchFailed(f"Cannot import launcher {path!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(launcher):
        raise LaunchFailed(f"Launcher {path!r} is a {type(launcher).__name__}, not a function")
    return launcher


def load_flexible(launch: dict[str, Any], plugins: Plugins, progress: Progress) -> LoadedModel:
    registration = FlexibleRegistration.model_validate(launch["registration"])
    if launch.get("model_path"):
        registration.model_uri = launch["model_path"]
    # Launch-time arguments override the registration's launcher_args (Xinference does the reverse).
    kwargs = {**registration.launcher_kwargs(), **launch.get("kwargs", {})}
    launcher = resolve_launcher(registration.launcher, plugins)
    progress("loading", 0.85, f"calling launcher {registration.launcher}")
    try:
        model = launcher(model_uid=launch["model_uid"], model_spec=registration, **kwargs)
    except Exception as exc:
        raise LaunchFailed(f"Launcher {registration.launcher!r} raised {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(model, "infer", None)):
        raise LaunchFailed(f"Launcher {registration.launcher!r} returned a {type(model).__name__}, "
                           "which has no infer() method; return a modelyard.flexible.FlexibleModel")
    try:
        model.load()
    except Exception as exc:
        raise LaunchFailed(f"{type(model).__name__}.load() raised {type(exc).__name__}: {exc}") from exc
    return LoadedModel(model, ["infer"], {"launcher": registration.launcher})


def load_with_engine(launch: dict[str, Any], plugins: Plugins, progress: Progress) -> LoadedModel:
    model_type = plugins.model_type(launch["model_type"])
    registration = model_type.parse(launch["registration"])
    name = launch["model_engine"]
    engine = plugins.engines.get(name)
    if engine is None:
        broken = plugins.broken(name)
        detail = broken.load_failure() if broken is not None else "it is not registered in the worker"
        raise LaunchFailed(f"Engine {name!r} is not available: {detail}")
    spec = ModelSpec.model_validate(launch["spec"])
    path = launch.get("model_path")
    if not path and spec.model_uri:
        local = local_path(spec.model_uri)
        path = str(local) if local is not None else spec.model_uri
    if not path:
        path = download.fetch(spec, progress)
    try:
        cls = import_object(engine.impl)
    except Exception as exc:
        raise LaunchFailed(f"Cannot import engine {name!r} ({engine.impl}): {type(exc).__name__}: {exc}") from exc
    progress("loading", 0.85, f"loading {path} with {name}")
    model = cls(launch["model_uid"], registration, spec, path, **launch.get("kwargs", {}))
    try:
        model.load()
    except Exception as exc:
        raise LaunchFailed(f"Engine {name!r} could not load {path}: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(model, model_type.methods(registration), {"engine": name, "model_path": path})


def load_model(launch: dict[str, Any], plugins: Plugins, progress: Progress) -> LoadedModel:
    model_type = plugins.model_type(launch["model_type"])
    if model_type.name == "flexible":
        return load_flexible(launch, plugins, progress)
    return load_with_engine(launch, plugins, progress)
