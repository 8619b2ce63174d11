"""API keys: created once and shown once, stored as hashes in the SQLite state, checked per request.

A key is `my-` and 43 random URL-safe characters (256 bits), so one SHA-256 is as good as any
password hash against guessing, and costs a microsecond on the request path. Keys are listed
by id and prefix, never by value. The server keeps them in memory and re-reads the table when
another process (`modelyard keys ...` against the state folder) has changed the database, which
SQLite's `PRAGMA data_version` tells for the price of one statement.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from modelyard.errors import InvalidRequest, NotFound
from modelyard.store import Store
from modelyard.types import check_name_length

KEY_PREFIX = "my-"
SHOWN_PREFIX = 10  # characters of a key shown when it is listed: `my-` and 7 of its random ones
MIN_OPERATOR_KEY = 16  # MODELYARD_ADMIN_KEY is chosen by a person: not shorter than this
SCOPES = ("inference", "models:read", "models:launch", "models:register", "admin")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | float | int) -> float:
    """Seconds from `90`, `90s`, `15m`, `12h`, `30d` or `2w`."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = DURATION.match(str(text))
        if match is None:
            raise InvalidRequest(f"{text!r} is not a duration: give seconds or a number with s, m, h, d or w "
                                 "(for example 30d).")
        seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not seconds > 0:
        raise InvalidRequest(f"A duration must be positive, got {text!r}.")
    return seconds


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class ApiKey:
    id: str
    prefix: str
    scopes: tuple[str, ...]
    models: tuple[str, ...] = ()  # uid or model-name patterns an inference key is limited to; () = any
    name: str | None = None
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def may_use(self, *names: str | None) -> bool:
        """Whether this key may call a model known by these names (its uid, its model name)."""
        if not self.models or self.admin:
            return True
        return any(name and fnmatchcase(name, pattern) for name in names for pattern in self.models)

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "prefix": self.prefix, "name": self.name, "scopes": list(self.scopes),
                "models": list(self.models), "created_at": self.created_at, "expires_at": self.expires_at,
                "last_used_at": self.last_used_at, "revoked_at": self.revoked_at}


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(scopes))
    if not scopes:
        raise InvalidRequest(f"A key needs at least one scope: {', '.join(SCOPES)}.")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidRequest(f"Unknown scope {unknown[0]!r}; the scopes are {', '.join(SCOPES)}.")
    return scopes


class KeyStore:
    """The keys in the state's `api_keys` table, and the check of a presented key."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._by_hash: dict[str, ApiKey] = {}
        self._used: dict[str, float] = {}  # last uses not yet written
        self._version: int | None = None
        self._reload()

    # -- reading ----------------------------------------------------------------------------

    def _reload(self) -> None:
        rows = self.store.execute("SELECT id, hash, prefix, name, scopes, models, created_at, expires_at, "
                                  "last_used_at, revoked_at FROM api_keys")
        keys = {}
        for (key_id, digest, prefix, name, scopes, models, created, expires, used, revoked) in rows:
            keys[digest] = ApiKey(key_id, prefix, tuple(json.loads(scopes)), tuple(json.loads(models)), name,
                                  created, expires, used, revoked)
        with self._lock:
            for key in keys.values():
                if key.id in self._used:
                    key.last_used_at = max(key.last_used_at or 0, self._used[key.id])
            self._by_hash = keys
            self._version = self.store.data_version()

    def refresh(self) -> None:
        """Re-read the keys if another process changed the database since we last did."""
        if self.store.data_version() != self._version:
            self._reload()

    @property
    def enabled(self) -> bool:
        """Keys are on once any key exists (a revoked or expired one too: revoking the last key
        must not reopen the server). Call `refresh` first to see other processes' changes."""
        return bool(self._by_hash)

    def authenticate(self, value: str) -> ApiKey | None:
        """The usable key with this value, or None; notes its use. Call `refresh` first."""
        key = self._by_hash.get(hash_key(value))
        now = time.time()
        if key is None or not key.usable(now):
            return None
        key.last_used_at = now
        self._used[key.id] = now
        return key

    def list(self) -> list[ApiKey]:
        self.refresh()
        return sorted(self._by_hash.values(), key=lambda k: k.created_at)

    def get(self, key_id: str) -> ApiKey:
        for key in self.list():
            if key.id == key_id:
                return key
        raise NotFound(f"No API key with id {key_id!r}; `modelyard keys list` shows them.")

    # -- writing ----------------------------------------------------------------------------

    def create(self, scopes: Iterable[str], *, models: Iterable[str] = (), expires_in: str | float | None = None,
               name: str | None = None, value: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its value, which is shown this once and never stored."""
        scopes = check_scopes(scopes)
        if name is not None:
            check_name_length("name", name)
        value = value or KEY_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        key = ApiKey(id=secrets.token_hex(6), prefix=value[:SHOWN_PREFIX], scopes=scopes,
                     models=tuple(m for m in models if m), name=name, created_at=now,
                     expires_at=now + parse_duration(expires_in) if expires_in is not None else None)
        self.store.execute(
            "INSERT INTO api_keys (id, hash, prefix, name, scopes, models, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, hash_key(value), key.prefix, name, json.dumps(list(scopes)), json.dumps(list(key.models)),
             now, key.expires_at))
        self._reload()
        return key, value

    def ensure_admin(self, value: str) -> ApiKey:
        """The admin key with this value (MODELYARD_ADMIN_KEY), made if it does not exist."""
        if len(value) < MIN_OPERATOR_KEY:
            raise SystemExit(f"MODELYARD_ADMIN_KEY must be at least {MIN_OPERATOR_KEY} characters long; "
                             "`python -c 'import secrets; print(\"my-\" + secrets.token_urlsafe(32))'` makes one.")
        self.refresh()
        key = self._by_hash.get(hash_key(value))
        if key is not None and key.usable(time.time()) and key.admin:
            return key
        if key is not None:  # revoked, expired or demoted: the operator's value is the admin key again
            self.store.execute("DELETE FROM api_keys WHERE id = ?", (key.id,))
        return self.create(["admin"], name="MODELYARD_ADMIN_KEY", value=value)[0]

    def revoke(self, key_id: str) -> ApiKey:
        key = self.get(key_id)
        if key.revoked_at is None:
            self.store.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (time.time(), key_id))
            self._reload()
        return self.get(key_id)

    def flush_uses(self) -> None:
        """Write the last-used times noted since the last flush (the request path writes nothing)."""
        with self._lock:
            used, self._used = self._used, {}
        for key_id, at in used.items():
            self.store.execute("UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
                               (at, key_id))
