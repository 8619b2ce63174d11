"""The plugin manager: finds plugins by entry point, isolates their failures, collects registrations.

Plugins live in the entry-point group `modelyard`. Each entry point is loaded on its own, so one
that fails to import (or whose hook raises) is recorded with its error and the rest still load.
By convention an entry point is named after the engine or launcher it provides, so asking for that
name while its plugin is broken answers the plugin's error instead of "not found".

Switches, read in the server and in every worker (workers inherit the environment):
- `MODELYARD_DISABLE_PLUGIN_AUTOLOAD=1`: load no entry points at all.
- `MODELYARD_LOAD_PLUGINS=dist-a,dist-b`: load only entry points of these distributions
  (set but empty: none).
Neither switch turns off the built-ins: core's own plugin modules and the server's entry point.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from modelyard import hookspecs
from modelyard.engines import Engine
from modelyard.errors import InvalidRequest, NotFound
from modelyard.types import ModelType

ENTRY_POINT_GROUP = "modelyard"
BUILTIN_MODULES = ("modelyard.types.builtin",)
BUILTIN_DISTRIBUTIONS = frozenset({"modelyard-core", "modelyard-server"})


@dataclass
class FlexibleLauncher:
    name: str
    import_path: str
    requirements: tuple[str, ...] = ()
    plugin: str = ""


@dataclass
class PluginRecord:
    """What `modelyard plugins` shows for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    builtin: bool = False
    error: str | None = None
    traceback: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)

    def load_failure(self) -> str:
        """Why what this plugin provides is unavailable, for error messages."""
        return f"its plugin {self.name!r} ({self.distribution} {self.version}) failed to load: {self.error}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "error": self.error,
            "registered": self.registered,
        }


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _allow_list() -> frozenset[str] | None:
    raw = os.environ.get("MODELYARD_LOAD_PLUGINS")
    if raw is None:
        return None
    return frozenset(_normalise_dist(n) for n in raw.split(",") if n.strip())


def _normalise_dist(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Plugins:
    """The loaded plugins of this process and everything they registered."""

    def __init__(self, *, autoload: bool | None = None):
        self.manager = pluggy.PluginManager("modelyard")
        self.manager.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.model_types: dict[str, ModelType] = {}
        self.engines: dict[str, Engine] = {}
        self.launchers: dict[str, FlexibleLauncher] = {}
        self.catalogue: dict[tuple[str, str], dict[str, Any]] = {}
        for module_name in BUILTIN_MODULES:
            module = importlib.import_module(module_name)
            self._add(module, PluginRecord(name=module_name, distribution="modelyard-core",
                                           module=module_name, builtin=True))
        if autoload is None:
            autoload = not _truthy(os.environ.get("MODELYARD_DISABLE_PLUGIN_AUTOLOAD"))
        self._load_entry_points(autoload)
        self._collect()

    # -- loading --------------------------------------------------------------------------

    def _load_entry_points(self, autoload: bool) -> None:
        allow = _allow_list()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else None
            builtin = dist is not None and _normalise_dist(dist) in BUILTIN_DISTRIBUTIONS
            if not builtin:
                if not autoload:
                    continue
                if allow is not None and (dist is None or _normalise_dist(dist) not in allow):
                    continue
            if ep.name in self.records:
                continue  # the same distribution seen twice on sys.path
            record = PluginRecord(name=ep.name, distribution=dist, module=ep.value, builtin=builtin,
                                  version=ep.dist.version if ep.dist is not None else None)
            try:
                module = ep.load()
            except BaseException as exc:  # a plugin's import may raise anything, SystemExit included
                record.error = _short_error(exc)
                record.traceback = traceback.format_exc()
                self.records[ep.name] = record
                continue
            self._add(module, record)

    def _add(self, module: Any, record: PluginRecord) -> None:
        try:
            self.manager.register(module, name=record.name)
        except Exception as exc:
            record.error = _short_error(exc)
        self.records[record.name] = record

    def register(self, module: Any, name: str) -> None:
        """Register an in-process plugin (tests do this); call `unregister` after."""
        self._add(module, PluginRecord(name=name, module=getattr(module, "__name__", name)))
        self._collect()

    def unregister(self, name: str) -> None:
        plugin = self.manager.get_plugin(name)
        if plugin is not None:
            self.manager.unregister(plugin)
        self.records.pop(name, None)
        self._collect()

    # -- registrations --------------------------------------------------------------------

    def _collect(self) -> None:
        self.model_types.clear()
        self.engines.clear()
        self.launchers.clear()
        self.catalogue.clear()
        for record in self.records.values():
            record.registered = {}

        def model_type(plugin: str, mt: ModelType) -> None:
            self.model_types[mt.name] = mt
            self._note(plugin, "model_types", mt.name)

        def engine(plugin: str, eng: Engine) -> None:
            eng.plugin = plugin
            self.engines[eng.name] = eng
            self._note(plugin, "engines", eng.name)

        def launcher(plugin: str, name: str, import_path: str, requirements=(), aliases=()) -> None:
            # aliases: other names registrations use for it (Xinference's module paths, say)
            found = FlexibleLauncher(name, import_path, tuple(requirements), plugin)
            for each in (name, *aliases):
                self.launchers[each] = found
                self._note(plugin, "flexible_launchers", each)

        def model(plugin: str, model_type: str, registration: dict[str, Any]) -> None:
            self.catalogue[(model_type, registration["model_name"])] = registration
            self._note(plugin, "models", registration["model_name"])

        self._call("register_model_types", model_type)
        self._call("register_engines", engine)
        self._call("register_flexible_launchers", launcher)
        self._call("register_models", model)

    def _note(self, plugin: str, kind: str, name: str) -> None:
        record = self.records.get(plugin)
        if record is not None:
            record.registered.setdefault(kind, []).append(name)

    def _call(self, hook_name: str, callback: Callable[..., None]) -> None:
        """Call one hook plugin by plugin, so a plugin whose hook raises is recorded and skipped."""
        hook = getattr(self.manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name

            def register(*args, _plugin=plugin, **kwargs):
                callback(_plugin, *args, **kwargs)

            try:
                impl.function(register)
            except Exception as exc:
                record = self.records.get(plugin)
                if record is not None:
                    record.error = f"{hook_name} raised {_short_error(exc)}"

    def register_commands(self, cli: Any) -> None:
        """Let every plugin add its CLI commands; one that raises is skipped."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli)
            except Exception as exc:
                record = self.records.get(impl.plugin_name)
                if record is not None:
                    record.error = f"register_commands raised {_short_error(exc)}"

    # -- look-ups -------------------------------------------------------------------------

    def broken(self, name: str) -> PluginRecord | None:
        """The failed plugin whose entry point carries `name`, if any."""
        record = self.records.get(name)
        return record if record is not None and record.error else None

    def model_type(self, name: str) -> ModelType:
        """The model type called `name` (case-insensitive), or a 400 that lists the known ones."""
        found = self.model_types.get(name)
        if found is None:
            by_lower = {k.lower(): v for k, v in self.model_types.items()}
            found = by_lower.get(name.lower())
        if found is None:
            known = ", ".join(sorted(self.model_types))
            raise InvalidRequest(f"Unknown model type {name!r}. Known model types: {known}.")
        return found

    def launcher(self, name: str) -> FlexibleLauncher:
        found = self.launchers.get(name)
        if found is not None:
            return found
        record = self.broken(name)
        if record is not None:
            raise InvalidRequest(f"Flexible launcher {name!r} is unavailable: {record.load_failure()}")
        known = ", ".join(sorted(self.launchers)) or "none"
        raise NotFound(f"No flexible launcher named {name!r} is registered (registered: {known}); "
                       "give a registered name or a dotted import path such as 'my_module.launcher'.")

    def describe(self) -> list[dict[str, Any]]:
        return [record.as_dict() for record in self.records.values()]


_loaded: Plugins | None = None
_lock = threading.Lock()


def get_plugins() -> Plugins:
    """This process's plugins, loaded once on first use."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = Plugins()
        return _loaded


def is_import_path(name: str) -> bool:
    """Whether a launcher or engine `name` is an import path (`pkg.module:attr`, `pkg.module.attr`)
    rather than a registered name; a registered name wins even if it has a dot."""
    return "." in name or ":" in name


def import_object(path: str) -> Any:
    """The object an import path names: `pkg.module:attr` or `pkg.module.attr`."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"{path!r} is not an import path like 'package.module:name' or 'package.module.name'")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
