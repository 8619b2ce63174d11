"""Engines: what an engine plugin registers, and choosing the engine and spec for a launch.

Choosing imports no engine library: it reads what engines registered, and asks each engine's
`match` rule (a cheap function in the plugin's shim) whether it can serve a spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from modelyard.plugins import Plugins
    from modelyard.types import ModelSpec, Registration


@dataclass
class Engine:
    """An inference engine.

    `impl` is an import path (`"pkg.module:Class"`) imported only inside the worker, so the server
    never loads the engine's library. `match(registration, spec)` decides, without importing
    anything heavy, whether the engine can serve one spec: None when it can, else the reason.
    `priority` orders engines when a launch names none (higher first).
    """

    name: str
    model_types: tuple[str, ...]
    impl: str
    formats: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    match: Callable[[Any, Any], str | None] | None = None
    priority: int = 0
    plugin: str = field(default="", compare=False)

    def why_not(self, registration: Registration, spec: ModelSpec) -> str | None:
        if self.formats and spec.model_format not in self.formats:
            return f"it serves {', '.join(self.formats)} models, not {spec.model_format}"
        return self.match(registration, spec) if self.match is not None else None


def _size_text(size: Any) -> str:
    return str(size).replace(".", "_")


def matching_specs(registration: Registration, model_format: str | None = None, size: Any = None,
                   quantization: str | None = None, hub: str | None = None) -> list[ModelSpec]:
    """The registration's specs that fit the launch's format, size, quantization and hub."""
    return [s for s in registration.model_specs
            if (model_format is None or s.model_format == model_format)
            and (size is None or _size_text(s.model_size_in_billions) == _size_text(size))
            and (quantization is None or (s.quantization or "none") == quantization)
            and (hub is None or (s.model_hub or "huggingface") == hub)]


def select(plugins: Plugins, model_type: str, registration: Registration, *, engine_name: str | None = None,
           model_format: str | None = None, size: Any = None, quantization: str | None = None,
           hub: str | None = None) -> tuple[Engine, ModelSpec]:
    """The engine and spec a launch uses; a 400 that says why when none fits."""
    specs = matching_specs(registration, model_format, size, quantization, hub)
    if not specs:
        offered = "; ".join(sorted({f"{s.model_format} {s.model_size_in_billions}B {s.quantization or 'none'} "
                                    f"({s.model_hub})" for s in registration.model_specs}))
        raise InvalidRequest(f"{registration.model_name} has no spec with format={model_format}, size={size}, "
                             f"quantization={quantization}, hub={hub}. It offers: {offered}.")
    if engine_name is not None:
        engine = plugins.engines.get(engine_name)
        if engine is None:
            broken = plugins.broken(engine_name)
            if broken is not None:
                raise InvalidRequest(f"Engine {engine_name!r} is unavailable: {broken.load_failure()}")
            known = ", ".join(sorted(e.name for e in plugins.engines.values() if model_type in e.model_types))
            raise NotFound(f"No engine named {engine_name!r} is installed (for {model_type}: {known or 'none'}). "
                           f"{install_hint(engine_name)}")
        if model_type not in engine.model_types:
            raise InvalidRequest(f"Engine {engine_name!r} does not serve {model_type} models.")
        reasons = [engine.why_not(registration, s) for s in specs]
        for spec, reason in zip(specs, reasons, strict=True):
            if reason is None:
                return engine, spec
        raise InvalidRequest(f"Engine {engine_name!r} cannot serve {registration.model_name}: {reasons[0]}.")
    candidates = sorted((e for e in plugins.engines.values() if model_type in e.model_types),
                        key=lambda e: -e.priority)
    reasons = []
    for engine in candidates:
        for spec in specs:
            reason = engine.why_not(registration, spec)
            if reason is None:
                return engine, spec
        reasons.append(f"{engine.name}: {engine.why_not(registration, specs[0])}")
    if not candidates:
        raise InvalidRequest(f"No engine is installed that serves {model_type} models; install an engine "
                             "plugin such as modelyard-engine-transformers.")
    raise InvalidRequest(f"No installed engine can serve {registration.model_name}: " + "; ".join(reasons))


KNOWN_ENGINE_PACKAGES = {
    "transformers": "modelyard-engine-transformers",
    "llama.cpp": "modelyard-engine-llamacpp",
    "vllm": "modelyard-engine-vllm",
}


def install_hint(engine_name: str) -> str:
    package = KNOWN_ENGINE_PACKAGES.get(engine_name)
    return f"Install it with: pip install {package}" if package else ""


def report(plugins: Plugins, model_type: str, registration: Registration) -> dict[str, Any]:
    """Per engine, the specs it can serve, or why it cannot (GET /v1/engines/...)."""
    out: dict[str, Any] = {}
    names = {e.name for e in plugins.engines.values() if model_type in e.model_types} | set(KNOWN_ENGINE_PACKAGES)
    for name in sorted(names):
        engine = plugins.engines.get(name)
        if engine is None:
            broken = plugins.broken(name)
            reason = broken.load_failure() if broken is not None else f"not installed; {install_hint(name)}"
            out[name] = {"available": False, "reason": reason, "params": []}
            continue
        if model_type not in engine.model_types:
            continue
        params, reasons = [], []
        for spec in registration.model_specs:
            reason = engine.why_not(registration, spec)
            if reason is None:
                quantization = spec.quantization or "none"
                params.append({"model_name": registration.model_name, "model_format": spec.model_format,
                               "model_size_in_billions": spec.model_size_in_billions,
                               "quantization": quantization, "quantizations": [quantization]})
            else:
                reasons.append(reason)
        out[name] = {"available": bool(params), "reason": None if params else "; ".join(sorted(set(reasons))),
                     "params": params}
    return out
