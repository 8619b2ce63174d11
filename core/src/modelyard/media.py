"""Media inputs of flexible models (an image for a pipeline or YOLO): what a request may give, in
the worker.

A request gives media inline: a data URL (`data:image/jpeg;base64,...`) or a plain base64 string.
A local path is read only under a folder the server allows (`MODELYARD_INPUT_DIRS`, folders
separated by the path separator; none by default), since it reads the server's disk. URLs are
refused: the server does not fetch for its callers.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest


def allowed_dirs() -> list[Path]:
    raw = os.environ.get("MODELYARD_INPUT_DIRS", "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def read_bytes(value: Any, what: str) -> bytes:
    """The bytes a request's `what` stands for: a data URL, base64, or a path under an allowed folder."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{what} must be a data URL or a base64 string, not {type(value).__name__}.")
    if value.startswith("data:"):
        head, _, data = value.partition(",")
        if ";base64" not in head:
            raise InvalidRequest(f"{what} is a data URL without ;base64: give the bytes base64-encoded.")
        value = data
    elif "://" in value[:16]:
        raise InvalidRequest(f"{what} is a URL; this server does not fetch URLs: send the bytes as base64.")
    try:  # base64 first: a JPEG's base64 starts with "/9j/", which looks like a path
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    if value.startswith(("/", "~", "./", "../")):
        return _read_allowed(value, what)
    raise InvalidRequest(f"{what} is neither a data URL nor valid base64.")


def _read_allowed(value: str, what: str) -> bytes:
    path = Path(value).expanduser().resolve()
    dirs = allowed_dirs()
    if not any(path == d or d in path.parents for d in dirs):
        allowed = ", ".join(map(str, dirs)) or "none (set MODELYARD_INPUT_DIRS)"
        raise InvalidRequest(f"{what} names a local file outside the folders this server reads from ({allowed}); "
                             "send the bytes as base64 instead.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"{what}: {path} cannot be read ({exc.strerror}).") from None


def read_image(value: Any, what: str = "image") -> Any:
    """A PIL image from a request's value (see `read_bytes`)."""
    from PIL import Image, UnidentifiedImageError

    data = read_bytes(value, what)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    # ImportError: an opener some library registered for other formats lacks its module (ultralytics'
    # HEIF opener without pi_heif)
    except (UnidentifiedImageError, OSError, ValueError, ImportError) as exc:
        raise InvalidRequest(f"{what} is not an image this server can read ({type(exc).__name__}).") from None
    return image


def png_base64(image: Any) -> str:
    """A PIL image as base64 PNG, for a JSON answer."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
