"""modelyard's SQLite database under MODELYARD_HOME: one connection, transactional writes.

WAL journaling with synchronous=FULL: a write that returned is on disk, so what was acknowledged
survives a killed server.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    model_type TEXT NOT NULL,
    model_name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (model_type, model_name)
);
"""


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one statement in its own transaction and return its rows."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return rows

    def close(self) -> None:
        with self._lock:
            self._conn.close()
