"""The plugin manager: finds plugins by entry point, isolates their failures, collects registrations.

Plugins live in the entry-point group `modelyard`. Each entry point is loaded on its own and known
by its distribution and its name, so two distributions may both name an entry point `transformers`.
One that fails to import is recorded with its error and the rest still load. A hook's registrations
count only once the hook has returned: one that raises leaves nothing half-registered. A name
registered twice for one kind (an engine for one model type, a launcher, a model type, a catalogue
entry) stays with the plugin loaded first, and the clash is shown on both plugins.

Switches, read in the server and in every worker (workers inherit the environment):
- `MODELYARD_DISABLE_PLUGIN_AUTOLOAD=1`: load no entry points at all.
- `MODELYARD_LOAD_PLUGINS=dist-a,dist-b`: load only entry points of these distributions
  (set but empty: none).
- `MODELYARD_TRACE_PLUGINS=1`: log each plugin's loading, timing and registrations to stderr.
Neither of the first two turns off the built-ins: core's own plugin modules and the server's entry point.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from modelyard import config, hookspecs
from modelyard.engines import Engine, engine_key
from modelyard.errors import InvalidRequest, NotFound
from modelyard.types import ModelType

ENTRY_POINT_GROUP = "modelyard"
BUILTIN_MODULES = ("modelyard.types.builtin",)
BUILTIN_DISTRIBUTIONS = frozenset({"modelyard-core", "modelyard-server"})
HOOKS = frozenset(name for name in dir(hookspecs) if name.startswith("register_"))

log = logging.getLogger("modelyard.plugins")


@dataclass
class FlexibleLauncher:
    name: str
    import_path: str
    requirements: tuple[str, ...] = ()
    plugin: str = ""


@dataclass
class PluginRecord:
    """What `modelyard plugins` shows for one plugin. `id` is unique: an entry point's is
    `distribution/name`; `error` is a failure to load (nothing registered); `problems` are
    what loaded wrong (a hook that raised, an unknown hook, a name another plugin holds)."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    builtin: bool = False
    error: str | None = None
    traceback: str | None = None
    contract: int | None = None
    id: str = ""
    problems: list[str] = field(default_factory=list)  # found at loading
    collected: list[str] = field(default_factory=list)  # found collecting registrations
    registered: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = self.id or self.name

    def load_failure(self) -> str:
        """Why what this plugin provides is unavailable, for error messages."""
        return f"its plugin {self.name!r} ({self.distribution} {self.version}) failed to load: {self.error}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "contract": self.contract,
            "error": self.error,
            "problems": self.problems + self.collected,
            "registered": self.registered,
        }


def _allow_list() -> frozenset[str] | None:
    raw = os.environ.get("MODELYARD_LOAD_PLUGINS")
    if raw is None:
        return None
    return frozenset(_normalise_dist(n) for n in raw.split(",") if n.strip())


def _normalise_dist(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _tracer() -> Callable[[str], None] | None:
    if not config.truthy(os.environ.get("MODELYARD_TRACE_PLUGINS")):
        return None
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("modelyard plugins: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log.info


class Plugins:
    """The loaded plugins of this process and everything they registered."""

    def __init__(self, *, autoload: bool | None = None):
        self.manager = pluggy.PluginManager("modelyard")
        self.manager.add_hookspecs(hookspecs)
        self.trace = _tracer()
        self.records: dict[str, PluginRecord] = {}
        self.model_types: dict[str, ModelType] = {}
        self.engines: dict[tuple[str, str], Engine] = {}  # by (model type, normalised name)
        self.launchers: dict[str, FlexibleLauncher] = {}
        self.catalogue: dict[tuple[str, str], dict[str, Any]] = {}
        for module_name in BUILTIN_MODULES:
            module = importlib.import_module(module_name)
            self._add(module, PluginRecord(name=module_name, distribution="modelyard-core",
                                           module=module_name, builtin=True))
        if autoload is None:
            autoload = not config.truthy(os.environ.get("MODELYARD_DISABLE_PLUGIN_AUTOLOAD"))
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
                    self._say(f"{ep.name} ({dist}) not loaded: MODELYARD_DISABLE_PLUGIN_AUTOLOAD is set")
                    continue
                if allow is not None and (dist is None or _normalise_dist(dist) not in allow):
                    self._say(f"{ep.name} ({dist}) not loaded: not in MODELYARD_LOAD_PLUGINS")
                    continue
            plugin_id = f"{_normalise_dist(dist)}/{ep.name}" if dist else ep.name
            if plugin_id in self.records:
                continue  # the same distribution seen twice on sys.path
            record = PluginRecord(name=ep.name, distribution=dist, module=ep.value, builtin=builtin,
                                  version=ep.dist.version if ep.dist is not None else None, id=plugin_id)
            started = time.perf_counter()
            try:
                module = ep.load()
            except BaseException as exc:  # a plugin's import may raise anything, SystemExit included
                record.error = _short_error(exc)
                record.traceback = traceback.format_exc()
                self.records[plugin_id] = record
                self._say(f"{plugin_id} {record.version} failed to import: {record.error}")
                continue
            self._say(f"{plugin_id} {record.version} imported {ep.value} in "
                      f"{(time.perf_counter() - started) * 1000:.1f} ms")
            self._add(module, record)

    def _say(self, message: str) -> None:
        if self.trace is not None:
            self.trace(message)

    def _add(self, module: Any, record: PluginRecord) -> None:
        contract = getattr(module, "modelyard_contract", None)
        record.contract = contract if isinstance(contract, int) else None
        if record.contract is not None and record.contract > hookspecs.CONTRACT_VERSION:
            record.problems.append(f"written for plugin contract {record.contract}; this modelyard has "
                                   f"{hookspecs.CONTRACT_VERSION}: upgrade modelyard")
        for hook in _unknown_hooks(module):
            close = difflib.get_close_matches(hook, HOOKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (the hooks are: {', '.join(sorted(HOOKS))})"
            record.problems.append(f"unknown hook {hook!r}{hint}: it is never called")
        try:
            self.manager.register(module, name=record.id)
        except Exception as exc:
            record.error = _short_error(exc)
        self.records[record.id] = record

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
            record.registered, record.collected = {}, []
        owners: dict[tuple[str, Any], str] = {}

        def model_type(plugin: str, mt: ModelType) -> None:
            if self._claim(owners, plugin, self.model_types, mt.name, mt, "model type", mt.name):
                self._note(plugin, "model_types", mt.name)

        def engine(plugin: str, eng: Engine) -> None:
            eng.plugin = plugin
            for given in eng.model_types:
                type_name = self.model_type(given).name  # a 400 for an unknown type: a problem shown
                key = (type_name, engine_key(eng.name))
                if self._claim(owners, plugin, self.engines, key, eng, "engine", f"{eng.name} for {type_name}"):
                    self._note(plugin, "engines", f"{eng.name} ({type_name})")

        def launcher(plugin: str, name: str, import_path: str, requirements=(), aliases=()) -> None:
            # aliases: other names registrations use for it (Xinference's module paths, say)
            found = FlexibleLauncher(name, import_path, tuple(requirements), plugin)
            for each in (name, *aliases):
                if self._claim(owners, plugin, self.launchers, each, found, "flexible launcher", each):
                    self._note(plugin, "flexible_launchers", each)

        def model(plugin: str, model_type: str, registration: dict[str, Any]) -> None:
            name = registration["model_name"]
            if self._claim(owners, plugin, self.catalogue, (model_type, name), registration, "catalogue model",
                           f"{model_type} {name}"):
                self._note(plugin, "models", name)

        self._call("register_model_types", model_type)
        self._call("register_engines", engine)
        self._call("register_flexible_launchers", launcher)
        self._call("register_models", model)

    def _claim(self, owners: dict[tuple[str, Any], str], plugin: str, table: dict, key: Any, value: Any,
               kind: str, shown: str) -> bool:
        """Put `value` under `key` unless a plugin loaded earlier holds it; a clash is shown on both."""
        holder = owners.get((kind, key))
        if holder is None:
            owners[(kind, key)] = plugin
            table[key] = value
            return True
        if holder == plugin:
            return False  # one plugin naming the same thing twice: the first stands
        for record_id in (plugin, holder):
            record = self.records.get(record_id)
            if record is not None:
                record.collected.append(f"{kind} {shown!r} is registered by both {holder!r} and "
                                       f"{plugin!r}; {holder!r} (loaded first) keeps it")
        self._say(f"clash: {kind} {shown!r} of {plugin!r} is already registered by {holder!r}")
        return False

    def _note(self, plugin: str, kind: str, name: str) -> None:
        record = self.records.get(plugin)
        if record is not None:
            record.registered.setdefault(kind, []).append(name)

    def _call(self, hook_name: str, callback: Callable[..., None]) -> None:
        """Call one hook plugin by plugin. A plugin's registrations are held until its hook returns:
        one whose hook raises is recorded with the error, and none of that call's registrations count."""
        hook = getattr(self.manager.hook, hook_name)
        order = {plugin_id: n for n, plugin_id in enumerate(self.records)}
        # in load order (pluggy's own order puts trylast first): the first loaded keeps a name
        for impl in sorted(hook.get_hookimpls(), key=lambda i: order.get(i.plugin_name, len(order))):
            plugin = impl.plugin_name
            held: list[tuple[tuple, dict]] = []

            def register(*args, _held=held, **kwargs):
                _held.append((args, kwargs))

            try:
                impl.function(register)
            except Exception as exc:
                record = self.records.get(plugin)
                if record is not None:
                    record.collected.append(f"{hook_name} raised {_short_error(exc)}; "
                                           f"none of its {len(held)} registration(s) count")
                self._say(f"{plugin}: {hook_name} raised {_short_error(exc)}")
                continue
            for args, kwargs in held:
                try:
                    callback(plugin, *args, **kwargs)
                except Exception as exc:  # a registration of the wrong shape
                    record = self.records.get(plugin)
                    if record is not None:
                        record.collected.append(f"{hook_name}: a registration was refused: "
                                               f"{_short_error(exc)}")
            if held:
                self._say(f"{plugin}: {hook_name} registered {len(held)}")

    def register_routes(self, add: Callable[..., tuple[list[str], list[str]]]) -> None:
        """Let every plugin add its routes (only the server calls this): `add(plugin, router, ...)`
        returns the routes added and the reasons others were refused, shown as the plugin's problems."""

        def routes(plugin: str, *args: Any, **kwargs: Any) -> None:
            added, refused = add(plugin, *args, **kwargs)
            record = self.records.get(plugin)
            if record is not None:
                record.collected.extend(refused)
            for route in added:
                self._note(plugin, "routes", route)

        self._call("register_routes", routes)

    def register_commands(self, cli: Any) -> None:
        """Let every plugin add its CLI commands; one that raises is skipped."""
        for impl in self.manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli)
            except Exception as exc:
                record = self.records.get(impl.plugin_name)
                if record is not None:
                    record.problems.append(f"register_commands raised {_short_error(exc)}")

    # -- look-ups -------------------------------------------------------------------------

    def broken(self, name: str) -> PluginRecord | None:
        """A failed plugin whose entry point is named `name`, if any (by convention an entry point
        is named after the engine or launcher it provides)."""
        return next((r for r in self.records.values() if r.error and engine_key(r.name) == engine_key(name)), None)

    def failures(self) -> str:
        """For "not registered" answers: which plugins failed to load, if any did."""
        failed = [f"{r.name} ({r.distribution}): {r.error}" for r in self.records.values() if r.error]
        return f" Plugins that failed to load: {'; '.join(failed)}." if failed else ""

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

    def engine(self, model_type: str, name: str) -> Engine | None:
        """The engine registered as `name` for `model_type` (names compare case-insensitively,
        '-' as '_': Xinference's clients send `Transformers`, `vLLM`, `sentence_transformers`)."""
        found = self.engines.get((model_type, engine_key(name)))
        if found is None:
            found = next((e for (t, _), e in self.engines.items()
                          if t == model_type and engine_key(name) in map(engine_key, e.aliases)), None)
        return found

    def engines_for(self, model_type: str) -> list[Engine]:
        """The engines registered for `model_type`, in registration order."""
        return [e for (t, _), e in self.engines.items() if t == model_type]

    def names_import_path(self, launcher: str) -> bool:
        """Whether a registration's `launcher` is an import path to import, rather than a launcher
        name: a registered name (or alias) wins even if it has a dot, and Xinference's own launcher
        module names are names (Xinference is not installed here to import them from)."""
        return (launcher not in self.launchers and is_import_path(launcher)
                and not launcher.startswith(XINFERENCE_LAUNCHERS))

    def launcher(self, name: str) -> FlexibleLauncher:
        found = self.launchers.get(name)
        if found is not None:
            return found
        record = self.broken(name)
        if record is not None:
            raise InvalidRequest(f"Flexible launcher {name!r} is unavailable: {record.load_failure()}")
        known = ", ".join(sorted({launcher.name for launcher in self.launchers.values()})) or "none"
        folder = SUGGESTED_LAUNCHERS.get(name.removeprefix(XINFERENCE_LAUNCHERS))
        hint = f" Install it from modelyard's repository with: pip install ./{folder}." if folder else ""
        raise NotFound(f"No flexible launcher named {name!r} is registered (installed: {known}); "
                       "give an installed launcher's name or a dotted import path such as 'my_module.launcher'."
                       + hint + self.failures())

    def describe(self) -> list[dict[str, Any]]:
        return [record.as_dict() for record in self.records.values()]


XINFERENCE_LAUNCHERS = "xinference.model.flexible.launchers."
# the launchers this repository ships, by name, and their plugin folders
SUGGESTED_LAUNCHERS = {"transformers": "plugins/flexible-hf-pipeline", "modelscope": "plugins/flexible-modelscope",
                       "yolo": "plugins/flexible-yolo"}


def _unknown_hooks(module: Any) -> list[str]:
    """The names a plugin marks as modelyard hooks that no hookspec defines."""
    found = []
    for name in dir(module):
        try:
            attr = getattr(module, name)
        except Exception:
            continue
        if getattr(attr, "modelyard_impl", None) is not None and name not in HOOKS:
            found.append(name)
    return found


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
