"""Turn what a model returns into JSON: plain values as they are, the usual containers converted."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import pathlib
import uuid
from typing import Any

from modelyard.arrays import Array


class NotJSONable(TypeError):
    pass


def _convert(obj: Any) -> Any:
    if isinstance(obj, Array):
        return obj.tolist()
    module = type(obj).__module__
    if module == "numpy" or module.startswith("numpy."):
        if hasattr(obj, "tolist"):
            return obj.tolist()  # arrays and numpy scalars alike
    if module.startswith("PIL.") and hasattr(obj, "save"):  # a PIL image: as base64 PNG
        from modelyard.media import png_base64

        return png_base64(obj)
    if hasattr(obj, "model_dump") and callable(obj.model_dump):  # pydantic v2
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # one level: Arrays stay Arrays
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (pathlib.PurePath, uuid.UUID)):
        return str(obj)
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if hasattr(obj, "tolist") and callable(obj.tolist):  # torch tensors, array-likes
        return obj.tolist()
    raise NotJSONable(
        f"a value of type {type(obj).__module__}.{type(obj).__qualname__} cannot be converted to JSON; "
        "return dicts, lists, strings, numbers, or numpy, torch, PIL, pydantic or dataclass values")


def dumps(obj: Any) -> bytes:
    """JSON bytes of `obj`, or `NotJSONable` naming the type that has no standard conversion."""
    try:
        return json.dumps(obj, default=_convert, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode()
    except ValueError as exc:  # NaN or Infinity, which JSON has no way to say
        raise NotJSONable(f"a value that JSON cannot hold ({exc}); replace NaN and infinities, "
                          "for example with None") from None
