"""Arrays on the worker link, in a defined form the server reads without numpy.

An array travels as a msgpack extension: its dtype (a numpy-style string: `<f4` little-endian
float32, `<i8`, `|u1`, ...), its shape and its raw bytes. Floating arrays always travel as `<f4`,
so the server can answer OpenAI's `encoding_format="base64"` (base64 of float32 little-endian
bytes) by slicing bytes, and `float` with the standard library's `array` module.

The worker recognises numpy arrays and torch tensors by their type's module, so the link imports
neither: a model that never uses numpy never loads it.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Any

import msgpack

ARRAY_EXT = 1
_TYPECODES = {"<f4": "f", "<f8": "d", "<i4": "i", "<i8": "q", "<u4": "I", "<u8": "Q", "|u1": "B", "|i1": "b",
              "|b1": "B", "<i2": "h", "<u2": "H"}


@dataclass(frozen=True)
class Array:
    """An n-dimensional array: `dtype`, `shape`, and its bytes in C order."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        if self.dtype not in _TYPECODES:
            raise ValueError(f"unsupported array dtype {self.dtype!r}")
        itemsize = array.array(_TYPECODES[self.dtype]).itemsize
        if math.prod(self.shape) * itemsize != len(self.data):
            raise ValueError(f"{len(self.data)} bytes do not hold a {self.dtype} array of shape {self.shape}")

    @classmethod
    def from_rows(cls, rows: list[list[float]]) -> Array:
        """A float32 matrix from lists of floats (for engines that produce lists)."""
        width = len(rows[0]) if rows else 0
        if any(len(r) != width for r in rows):
            raise ValueError("rows of different lengths do not make a matrix")
        flat = array.array("f", (float(x) for r in rows for x in r))
        if sys.byteorder == "big":
            flat.byteswap()
        return cls("<f4", (len(rows), width), flat.tobytes())

    def _flat(self) -> array.array:
        flat = array.array(_TYPECODES[self.dtype])
        flat.frombytes(self.data)
        if sys.byteorder == "big" and flat.itemsize > 1:
            flat.byteswap()
        return flat

    def tolist(self) -> Any:
        """Nested lists of Python numbers, as numpy's `tolist` gives them."""
        values: list[Any] = self._flat().tolist()
        if self.dtype == "|b1":
            values = [bool(v) for v in values]
        if not self.shape:
            return values[0]
        return _nest(values, self.shape)

    def row_bytes(self, index: int) -> bytes:
        """The bytes of row `index` of a matrix (the first axis)."""
        if not self.shape:
            raise ValueError("a scalar has no rows")
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} of an array of {self.shape[0]} rows")
        step = len(self.data) // self.shape[0] if self.shape[0] else 0
        return self.data[index * step:(index + 1) * step]

    def row_base64(self, index: int) -> str:
        return base64.b64encode(self.row_bytes(index)).decode("ascii")

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0


def _nest(flat: list[Any], shape: tuple[int, ...]) -> list[Any]:
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def as_array(obj: Any) -> Array | None:
    """`obj` as an Array when it is a numpy array or a torch tensor, else None. Neither library is
    imported: an object of theirs exists only if the model imported them."""
    module = type(obj).__module__.split(".")[0]
    if module == "torch" and hasattr(obj, "detach"):
        obj = obj.detach().cpu()
        obj = (obj.float() if obj.is_floating_point() else obj).numpy()
        module = "numpy"
    if module != "numpy" or not hasattr(obj, "dtype") or not hasattr(obj, "tobytes") or not getattr(obj, "shape", ()):
        return None  # not an array, or a scalar (which travels as a number)
    kind = obj.dtype.kind
    if kind == "f":
        obj = obj.astype("<f4", copy=False)
    elif kind in "iub":
        obj = obj.astype(obj.dtype.newbyteorder("<"), copy=False)
    else:
        return None
    if obj.dtype.str not in _TYPECODES:
        return None
    return Array(obj.dtype.str, tuple(int(n) for n in obj.shape), obj.tobytes(order="C"))


def wire_default(obj: Any) -> Any:
    """msgpack's `default`: how values msgpack has no form for travel on the link."""
    if isinstance(obj, Array):
        return msgpack.ExtType(ARRAY_EXT, msgpack.packb([obj.dtype, list(obj.shape), obj.data], use_bin_type=True))
    found = as_array(obj)
    if found is not None:
        return wire_default(found)
    if type(obj).__module__.split(".")[0] in ("numpy", "torch") and hasattr(obj, "item"):
        return obj.item()  # a scalar
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "model_dump") and callable(obj.model_dump):  # pydantic v2
        return obj.model_dump()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"a value of type {type(obj).__module__}.{type(obj).__qualname__} cannot travel to the server; "
                    "return dicts, lists, strings, numbers, bytes, numpy arrays or dataclasses")


def ext_hook(code: int, data: bytes) -> Any:
    if code == ARRAY_EXT:
        dtype, shape, raw = msgpack.unpackb(data, raw=False)
        return Array(dtype, tuple(shape), raw)
    return msgpack.ExtType(code, data)
