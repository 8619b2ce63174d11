"""What the server keeps of its models across restarts, in the SQLite state: the launches it
restores, and each model's events.

A launch is written when it is acknowledged (the caller is told the uid), with the whole request
(the operator's own words; an API key never travels in a body), the id of the key that made it and
its custom registration (one registered without `persist` is gone after a restart, and is
registered again, unpersisted, to restore the model), and removed when the model is terminated. A
server that starts again restores those that are still written, oldest first. Events (launched,
ready, exited, restarting, gave up, restored, terminated...) are kept per model, the newest
`MAX_EVENTS`, also for a model that has ended.
"""

from __future__ import annotations

import json
import time
from typing import Any

from modelyard.store import Store

MAX_EVENTS = 200


class LaunchLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, uid: str, request: dict[str, Any], key_id: str | None,
               registration: dict[str, Any] | None) -> None:
        """`registration`: {"model_type", "model"} of a custom model, None for a builtin one."""
        self.store.execute("INSERT OR REPLACE INTO launches (uid, request, key_id, registration, launched_at) "
                           "VALUES (?, ?, ?, ?, ?)", (uid, json.dumps(request), key_id,
                                                      json.dumps(registration) if registration else None,
                                                      time.time()))

    def forget(self, uid: str) -> None:
        self.store.execute("DELETE FROM launches WHERE uid = ?", (uid,))

    def restorable(self) -> list[tuple[str, dict[str, Any], str | None, dict[str, Any] | None]]:
        """(uid, launch request, key id, registration) of every launch to restore, in launch order."""
        rows = self.store.execute("SELECT uid, request, key_id, registration FROM launches "
                                  "ORDER BY launched_at, uid")
        return [(uid, json.loads(request), key_id, json.loads(registration) if registration else None)
                for uid, request, key_id, registration in rows]

    def event(self, uid: str, event: str, **detail: Any) -> dict[str, Any]:
        entry = {"at": time.time(), "event": event, **{k: v for k, v in detail.items() if v is not None}}
        self.store.execute("INSERT INTO model_events (uid, at, event) VALUES (?, ?, ?)",
                           (uid, entry["at"], json.dumps(entry)))
        self.store.execute("DELETE FROM model_events WHERE uid = ? AND id NOT IN "
                           "(SELECT id FROM model_events WHERE uid = ? ORDER BY id DESC LIMIT ?)",
                           (uid, uid, MAX_EVENTS))
        return entry

    def events(self, uid: str) -> list[dict[str, Any]]:
        """The model's events, oldest first."""
        rows = self.store.execute("SELECT event FROM model_events WHERE uid = ? ORDER BY id", (uid,))
        return [json.loads(row[0]) for row in rows]
