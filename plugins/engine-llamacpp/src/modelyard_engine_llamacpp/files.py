"""Which GGUF file a spec names: imports nothing heavy, so the server's rules may use it too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest

MAGIC = b"GGUF"
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def gguf_file(model_path: str, spec: Any) -> str:
    """The file llama.cpp opens for `model_path`: the path itself when it is a file, else the file
    Xinference's `model_file_name_template` names in that folder (with `{quantization}`), or the
    folder's one GGUF file. A split GGUF (`-00001-of-0000N`) opens at its first part."""
    path = Path(model_path.removeprefix("file://")).expanduser()
    if not path.exists():
        raise InvalidRequest(f"The GGUF path {model_path!r} does not exist on this machine.")
    if path.is_dir():
        path = _in_folder(path, spec)
    match = SPLIT.search(path.name)
    if match and match.group(1) != "00001":
        path = path.with_name(SPLIT.sub(f"-00001-of-{match.group(2)}.gguf", path.name))
    with open(path, "rb") as handle:
        if handle.read(4) != MAGIC:
            raise InvalidRequest(f"{path} is not a GGUF file (it does not start with GGUF's magic bytes).")
    return str(path)


def hub_files(registration: Any, spec: Any) -> list[str] | None:
    """The files of a GGUF repository a download needs: the spec's one quantization (all parts of a
    split one), not every quantization the repository holds. None (the whole repository) where the
    spec names no file template."""
    extra = getattr(spec, "model_extra", None) or {}
    quantization = getattr(spec, "quantization", None) or ""
    patterns = []
    if extra.get("model_file_name_template"):
        patterns.append(extra["model_file_name_template"].format(quantization=quantization))
    if extra.get("model_file_name_split_template"):
        patterns.append(extra["model_file_name_split_template"].format(quantization=quantization, part="*"))
    return patterns or None


def _first_part(name: str) -> bool:
    """Whether a file is a whole GGUF or the first part of a split one."""
    match = SPLIT.search(name)
    return match is None or match.group(1) == "00001"


def _in_folder(folder: Path, spec: Any) -> Path:
    extra = getattr(spec, "model_extra", None) or {}
    quantization = getattr(spec, "quantization", None) or ""
    first_part = ((extra.get("quantization_parts") or {}).get(quantization) or ["00001"])[0]
    for key in ("model_file_name_template", "model_file_name_split_template"):
        template = extra.get(key)
        if template:
            named = folder / template.format(quantization=quantization, part=first_part)
            if named.exists():
                return named
    found = sorted(p for p in folder.glob("*.gguf") if _first_part(p.name))
    if quantization:
        wanted = [p for p in found if quantization.lower() in p.name.lower()]
        found = wanted or found
    if len(found) == 1:
        return found[0]
    if not found:
        raise InvalidRequest(f"{folder} holds no .gguf file; give the file's path, or a model_file_name_template.")
    raise InvalidRequest(f"{folder} holds several GGUF files ({', '.join(p.name for p in found)}); give the "
                         "file's path, a model_file_name_template, or a quantization that picks one.")


# GGUF's value types (gguf.h): fixed sizes, 8 a string, 9 an array
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def context_length(path: str) -> int | None:
    """The context the model was trained for (`<architecture>.context_length`), read from the GGUF's
    header without loading it: the metadata comes before the tensors, and this key early in it."""
    import struct

    with open(path, "rb") as handle:
        def read(fmt: str):
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, handle.read(size))[0]

        def text() -> str:
            return handle.read(read("Q")).decode("utf-8", "replace")

        def value(kind: int):
            if kind in _FIXED:
                return read(_FIXED[kind])
            if kind == _STRING:
                return text()
            if kind == _ARRAY:
                item, count = read("I"), read("Q")
                if item in _FIXED:
                    handle.seek(count * struct.calcsize("<" + _FIXED[item]), 1)
                else:
                    for _ in range(count):
                        value(item)
                return None
            raise ValueError(f"unknown GGUF value type {kind}")

        if handle.read(4) != MAGIC:
            return None
        version = read("I")
        if version < 2:
            return None
        read("Q")  # tensors
        architecture = None
        try:
            for _ in range(read("Q")):
                key = text()
                found = value(read("I"))
                if key == "general.architecture":
                    architecture = found
                elif architecture and key == f"{architecture}.context_length":
                    return int(found)
        except (struct.error, ValueError):  # a damaged header: llama.cpp will say what is wrong
            return None
    return None
