"""Media inputs of flexible models: inline bytes yes, URLs no, local files only under allowed folders."""

import base64

import pytest

from modelyard.errors import InvalidRequest
from modelyard.media import read_bytes

DATA = b"\xff\xd8\xff\xe0 a jpeg, say"


def test_inline_forms_give_the_bytes():
    encoded = base64.b64encode(DATA).decode()
    assert encoded.startswith("/9j/")  # looks like a path, and is not one
    assert read_bytes(encoded, "image") == DATA
    assert read_bytes(f"data:image/jpeg;base64,{encoded}", "image") == DATA
    assert read_bytes(DATA, "image") == DATA


def test_local_files_only_under_the_allowed_folders(tmp_path, monkeypatch):
    inside = tmp_path / "inputs" / "cat.jpg"
    inside.parent.mkdir()
    inside.write_bytes(DATA)
    with pytest.raises(InvalidRequest, match="outside the folders"):
        read_bytes(str(inside), "image")
    monkeypatch.setenv("MODELYARD_INPUT_DIRS", str(inside.parent))
    assert read_bytes(str(inside), "image") == DATA
    with pytest.raises(InvalidRequest, match="outside the folders"):
        read_bytes(str(inside.parent / ".." / ".." / "etc" / "passwd"), "image")


@pytest.mark.parametrize("value, words", [
    ("https://example.com/cat.jpg", "does not fetch URLs"), ("file:///etc/passwd", "does not fetch URLs"),
    ("data:image/png,rawbytes", "without ;base64"), ("not base64!", "neither a data URL"), (42, "must be a data URL"),
    ("", "must be a data URL"),
])
def test_what_is_refused(value, words):
    with pytest.raises(InvalidRequest, match=words):
        read_bytes(value, "image")
