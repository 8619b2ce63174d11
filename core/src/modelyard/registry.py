"""The model registry: the builtin catalogue (from plugins) and custom registrations.

A custom registration with `persist` is written to SQLite before the call returns and is back
after a restart; one without lives until the server stops.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import ValidationError

from modelyard.errors import Conflict, InvalidRequest, NotFound
from modelyard.keys import ApiKey
from modelyard.plugins import Plugins
from modelyard.store import Store
from modelyard.types import ModelType, Registration, check_name_length, json_object

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def describe_validation_error(exc: ValidationError) -> str:
    """A one-line account of every problem pydantic found: `field.path: message`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def local_path(uri: str) -> Path | None:
    """The filesystem path a `file://` or plain-path URI names; None for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path, or a Windows drive letter
        return Path(uri).expanduser()
    return None


@dataclass
class Entry:
    model_type: str
    registration: Registration
    builtin: bool
    persisted: bool = False
    registered_by: str | None = None  # the id of the API key that registered it

    def summary(self) -> dict[str, Any]:
        return {
            "model_name": self.registration.model_name,
            "model_type": self.model_type,
            "is_builtin": self.builtin,
            "is_persisted": self.persisted,
            "model_description": self.registration.model_description,
            "registered_by": self.registered_by,
        }

    def detail(self) -> dict[str, Any]:
        data = self.registration.model_dump(mode="json")
        data["is_builtin"] = self.builtin
        data["registered_by"] = self.registered_by
        return data


class Registry:
    def __init__(self, plugins: Plugins, store: Store | None,
                 check: Callable[[Registration, ApiKey | None], None] | None = None):
        self.plugins = plugins
        self.store = store
        # the server's gates: what a registration may name (launcher paths, package sources)
        self.check = check
        self._custom: dict[tuple[str, str], Entry] = {}
        self._lock = threading.Lock()
        if store is not None:
            self._load_persisted()

    def _load_persisted(self) -> None:
        for model_type, name, spec, key_id in self.store.execute(
                "SELECT model_type, model_name, spec, key_id FROM registrations ORDER BY created_at"):
            try:
                mt = self.plugins.model_type(model_type)
                registration = mt.parse(json.loads(spec))
            except Exception as exc:  # a row written by another version must not stop the server
                log.warning("skipping persisted registration %s/%s: %s", model_type, name, exc)
                continue
            self._custom[(mt.name, name)] = Entry(mt.name, registration, builtin=False, persisted=True,
                                                  registered_by=key_id)

    # -- parsing --------------------------------------------------------------------------

    def parse(self, model_type: str, model: str | dict[str, Any]) -> tuple[ModelType, Registration]:
        """Validate a registration (a JSON string or an object) against its type's schema."""
        mt = self.plugins.model_type(model_type)
        try:
            model = json_object(model, "The model definition")
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        try:
            registration = mt.parse(model)
        except ValidationError as exc:
            raise InvalidRequest(
                f"Invalid {mt.name} registration: {describe_validation_error(exc)}") from None
        return mt, registration

    # -- custom registrations -------------------------------------------------------------

    def register(self, model_type: str, model: str | dict[str, Any], persist: bool,
                 key: ApiKey | None = None) -> Entry:
        mt, registration = self.parse(model_type, model)
        name = registration.model_name
        check_name_length("model_name", name)
        if not MODEL_NAME.match(name):
            raise InvalidRequest(
                f"Invalid model_name {name!r}: it must start with a letter or digit and hold only "
                "letters, digits, '_' and '-'.")
        for uri in registration.model_uris():
            path = local_path(uri)
            if path is None:
                continue
            if not path.is_absolute():
                raise InvalidRequest(f"model_uri {uri!r} must be an absolute path or a file:// URI.")
            if not path.exists():
                raise InvalidRequest(f"model_uri {uri!r} does not exist on this machine.")
        if self.check is not None:
            self.check(registration, key)
        registration.is_builtin = False
        key_id = key.id if key is not None else None
        entry = Entry(mt.name, registration, builtin=False, persisted=persist, registered_by=key_id)
        with self._lock:
            if (mt.name, name) in self.plugins.catalogue:
                raise Conflict(f"model_name {name!r} is taken by a builtin {mt.name} model; choose another.")
            if (mt.name, name) in self._custom:
                raise Conflict(f"A custom {mt.name} model named {name!r} is already registered; "
                               "unregister it first or choose another name.")
            if persist and self.store is not None:
                self.store.execute(
                    "INSERT INTO registrations (model_type, model_name, spec, created_at, key_id) "
                    "VALUES (?, ?, ?, ?, ?)", (mt.name, name, registration.model_dump_json(), time.time(), key_id))
            self._custom[(mt.name, name)] = entry
        return entry

    def unregister(self, model_type: str, model_name: str) -> None:
        mt = self.plugins.model_type(model_type)
        with self._lock:
            key = (mt.name, model_name)
            if key not in self._custom:
                if key in self.plugins.catalogue:
                    raise InvalidRequest(f"{model_name!r} is a builtin {mt.name} model and cannot be unregistered.")
                raise NotFound(f"No custom {mt.name} model named {model_name!r} is registered.")
            entry = self._custom[key]
            if entry.persisted and self.store is not None:
                self.store.execute("DELETE FROM registrations WHERE model_type = ? AND model_name = ?", key)
            del self._custom[key]

    # -- look-ups -------------------------------------------------------------------------

    def _builtin(self, mt: ModelType, name: str) -> Entry | None:
        data = self.plugins.catalogue.get((mt.name, name))
        if data is None:
            return None
        return Entry(mt.name, mt.parse({**data, "is_builtin": True}), builtin=True)

    def get(self, model_type: str, model_name: str) -> Entry:
        mt = self.plugins.model_type(model_type)
        entry = self._custom.get((mt.name, model_name)) or self._builtin(mt, model_name)
        if entry is None:
            raise NotFound(f"No {mt.name} model named {model_name!r} is registered or builtin.")
        return entry

    def list(self, model_type: str) -> list[Entry]:
        mt = self.plugins.model_type(model_type)
        builtins = [self._builtin(mt, name) for (t, name) in self.plugins.catalogue if t == mt.name]
        custom = [e for (t, _), e in self._custom.items() if t == mt.name]
        key = lambda e: e.registration.model_name.lower()  # noqa: E731
        return sorted(builtins, key=key) + sorted(custom, key=key)
