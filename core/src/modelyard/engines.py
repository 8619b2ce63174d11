"""Engines: what an engine plugin registers, and choosing the engine and spec for a launch.

Engines are named per model type: `(model_type, name)`, so one plugin may register `llama.cpp` for
LLMs and for embeddings with two implementations. Choosing imports no engine library: it reads what
engines registered, and asks each engine's `match` and `hardware` rules (cheap functions in the
plugin's shim) whether it can serve a spec on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from modelyard.plugins import Plugins
    from modelyard.types import ModelSpec, Registration


def engine_key(name: str) -> str:
    """How engine names compare: case-insensitively, '-' as '_' (`vLLM` is `vllm`)."""
    return name.strip().lower().replace("-", "_")


@dataclass
class Engine:
    """An inference engine for one or more model types.

    `impl` is an import path (`"pkg.module:Class"`) imported only inside the worker, so the server
    never loads the engine's library. Register one `Engine` per implementation: an engine that
    serves two types with two classes is registered twice under one name.

    What it needs, as data the server reads without importing anything heavy:
    - `requirements`: PEP 508 strings installed into the model's env when the server's environment
      lacks them (the plugin's own pip dependencies stay light);
    - `excluded_packages`: packages that must never be installed into its env (a dependency that
      would pull a build that breaks the engine), and `constraints` for those that are;
    - `hardware()`: None when this machine can run it, else the reason (no GPU, no AVX2);
    - `files(registration, spec)`: the glob patterns of the hub repository's files it needs (one
      quantization of a GGUF repository), or None for the whole repository;
    - `match(registration, spec)`: None when it can serve the spec, else the reason;
    - `priority` orders engines when a launch names none (higher first); `aliases` are other names
      clients send for it.
    """

    name: str
    model_types: tuple[str, ...]
    impl: str
    formats: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    excluded_packages: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    hardware: Callable[[], str | None] | None = None
    files: Callable[[Any, Any], list[str] | None] | None = None
    match: Callable[[Any, Any], str | None] | None = None
    priority: int = 0
    aliases: tuple[str, ...] = ()
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("model_types", "formats", "requirements", "excluded_packages", "constraints", "aliases"):
            value = getattr(self, name)
            setattr(self, name, (value,) if isinstance(value, str) else tuple(value))

    def why_not(self, registration: Registration, spec: ModelSpec) -> str | None:
        if self.formats and spec.model_format not in self.formats:
            return f"it serves {', '.join(self.formats)} models, not {spec.model_format}"
        if self.hardware is not None:
            reason = self._rule("hardware", self.hardware)
            if reason is not None:
                return reason
        return self._rule("match", self.match, registration, spec) if self.match is not None else None

    def needed_files(self, registration: Registration, spec: ModelSpec) -> tuple[str, ...] | None:
        if self.files is None:
            return None
        try:
            patterns = self.files(registration, spec)
        except Exception as exc:
            raise InvalidRequest(f"Engine {self.name!r}'s files rule raised {type(exc).__name__}: {exc} "
                                 f"(a bug in its plugin {self.plugin!r}).") from None
        return (patterns,) if isinstance(patterns, str) else tuple(patterns) if patterns is not None else None

    def _rule(self, what: str, rule: Callable[..., str | None], *args: Any) -> str | None:
        """A plugin's rule's answer; one that raises is a reason, not a 500."""
        try:
            return rule(*args)
        except Exception as exc:
            return f"its {what} rule raised {type(exc).__name__}: {exc} (a bug in its plugin {self.plugin!r})"


# Engines this repository ships, per model type, and how to install each from a checkout of it.
# Only plugins that exist in the repository are named: a hint must install something.
SUGGESTED_ENGINES: dict[str, dict[str, str]] = {
    "LLM": {"transformers": "plugins/engine-transformers", "llama.cpp": "plugins/engine-llamacpp",
            "vllm": "plugins/engine-vllm"},
    "embedding": {"sentence_transformers": "plugins/engine-sentence-transformers"},
    "rerank": {"sentence_transformers": "plugins/engine-sentence-transformers"},
}


def install_hint(model_type: str, engine_name: str) -> str:
    folder = {engine_key(k): v for k, v in SUGGESTED_ENGINES.get(model_type, {}).items()}.get(engine_key(engine_name))
    if folder is None:
        return ""
    return f"Install it from modelyard's repository with: pip install ./{folder}"


def _size_text(size: Any) -> str:
    return str(size).replace(".", "_")


def matching_specs(specs: list[ModelSpec], model_format: str | None = None, size: Any = None,
                   quantization: str | None = None, hub: str | None = None) -> list[ModelSpec]:
    """The specs that fit the launch's format, size, quantization and hub."""
    return [s for s in specs
            if (model_format is None or s.model_format == model_format)
            and (size is None or _size_text(s.model_size_in_billions) == _size_text(size))
            and (quantization is None or (s.quantization or "none").lower() == quantization.lower())
            and (hub is None or (s.model_hub or "huggingface") == hub)]


def _describe_spec(spec: ModelSpec) -> str:
    parts = [spec.model_format or "any format"]
    if spec.model_size_in_billions is not None:
        parts.append(f"{spec.model_size_in_billions}B")
    parts.append(spec.quantization or "none")
    return " ".join(parts) + f" ({spec.model_hub or 'huggingface'})"


def not_registered(plugins: Plugins, model_type: str, engine_name: str) -> str:
    """Why `engine_name` cannot serve `model_type`: the message of a 404 or a report's reason."""
    broken = plugins.broken(engine_name)
    if broken is not None:
        return f"Engine {engine_name!r} is unavailable: {broken.load_failure()}"
    others = sorted({t for (t, _), e in plugins.engines.items() if engine_key(e.name) == engine_key(engine_name)})
    known = ", ".join(e.name for e in plugins.engines_for(model_type)) or "none"
    text = f"No engine named {engine_name!r} is registered for {model_type} models (registered: {known})."
    if others:
        text += f" {engine_name!r} is registered for {', '.join(others)} models."
    hint = install_hint(model_type, engine_name)
    return " ".join(filter(None, [text, hint])) + plugins.failures()


def select(plugins: Plugins, model_type: str, registration: Registration, specs: list[ModelSpec], *,
           engine_name: str | None = None, model_format: str | None = None, size: Any = None,
           quantization: str | None = None, hub: str | None = None) -> tuple[Engine, ModelSpec]:
    """The engine and spec a launch uses; a 4xx that says why when none fits."""
    fitting = matching_specs(specs, model_format, size, quantization, hub)
    if not fitting:
        offered = "; ".join(sorted({_describe_spec(s) for s in specs})) or "no spec at all"
        asked = ", ".join(f"{k}={v}" for k, v in (("format", model_format), ("size", size),
                                                  ("quantization", quantization), ("hub", hub)) if v is not None)
        raise InvalidRequest(f"{registration.model_name} has no spec with {asked or 'these selectors'}. "
                             f"It offers: {offered}.")
    if engine_name is not None:
        engine = plugins.engine(model_type, engine_name)
        if engine is None:
            message = not_registered(plugins, model_type, engine_name)
            raise (InvalidRequest if plugins.broken(engine_name) else NotFound)(message)
        reasons = [engine.why_not(registration, s) for s in fitting]
        for spec, reason in zip(fitting, reasons, strict=True):
            if reason is None:
                return engine, spec
        raise InvalidRequest(f"Engine {engine.name!r} cannot serve {registration.model_name}: {reasons[0]}.")
    candidates = sorted(plugins.engines_for(model_type), key=lambda e: -e.priority)
    reasons = []
    for engine in candidates:
        for spec in fitting:
            if engine.why_not(registration, spec) is None:
                return engine, spec
        reasons.append(f"{engine.name}: {engine.why_not(registration, fitting[0])}")
    if not candidates:
        suggested = "; ".join(f"{name}: pip install ./{folder}"
                              for name, folder in SUGGESTED_ENGINES.get(model_type, {}).items())
        raise InvalidRequest(f"No engine is installed that serves {model_type} models."
                             + (f" From modelyard's repository: {suggested}." if suggested else "")
                             + plugins.failures())
    raise InvalidRequest(f"No installed engine can serve {registration.model_name}: " + "; ".join(reasons))


def report(plugins: Plugins, model_type: str, registration: Registration, specs: list[ModelSpec]) -> dict[str, Any]:
    """Per engine of `model_type`, the specs it can serve, or why it cannot (GET /v1/engines/...)."""
    out: dict[str, Any] = {}
    for engine in plugins.engines_for(model_type):
        params, reasons = [], []
        for spec in specs:
            reason = engine.why_not(registration, spec)
            if reason is None:
                quantization = spec.quantization or "none"
                params.append({"model_name": registration.model_name, "model_format": spec.model_format,
                               "model_size_in_billions": spec.model_size_in_billions,
                               "quantization": quantization, "quantizations": [quantization],
                               "model_hub": spec.model_hub})
            else:
                reasons.append(reason)
        out[engine.name] = {"available": bool(params), "reason": None if params else "; ".join(sorted(set(reasons))),
                            "params": params, "plugin": engine.plugin}
    for name in SUGGESTED_ENGINES.get(model_type, {}):
        if plugins.engine(model_type, name) is None:
            out[name] = {"available": False, "reason": not_registered(plugins, model_type, name), "params": []}
    return out
