"""What an engine plugin registers: which models it serves, what it needs, where its code lives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Engine:
    """An inference engine.

    `impl` is an import path (`"pkg.module:Class"`) imported only inside the worker, so the server
    never loads the engine's library. `match(spec)` decides, without importing anything heavy,
    whether the engine can serve one model spec; it returns None when it can, else the reason.
    """

    name: str
    model_types: tuple[str, ...]
    impl: str
    formats: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    match: Callable[[Any], str | None] | None = None
    plugin: str = field(default="", compare=False)
