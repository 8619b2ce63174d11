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


def _first_part(name: str) -> bool:
    """Whether a file is a whole GGUF or the first part of a split one."""
    match = SPLIT.search(name)
    return match is None or match.group(1) == "00001"


def _in_folder(folder: Path, spec: Any) -> Path:
    extra = getattr(spec, "model_extra", None) or {}
    quantization = getattr(spec, "quantization", None) or ""
    for key in ("model_file_name_template", "model_file_name_split_template"):
        template = extra.get(key)
        if template:
            named = folder / template.format(quantization=quantization, part="00001")
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
