import dataclasses
import datetime
import enum
import json
import pathlib

import numpy as np
import pytest
from pydantic import BaseModel

from modelyard.jsonable import NotJSONable, dumps


class Color(enum.Enum):
    RED = "red"


class Item(BaseModel):
    name: str
    when: datetime.date


@dataclasses.dataclass
class Pair:
    a: int
    b: list


def test_standard_conversions():
    value = {"arr": np.array([[1, 2], [3, 4]], dtype=np.int32), "f": np.float32(0.5), "b": np.bool_(True),
             "item": Item(name="x", when=datetime.date(2024, 1, 2)), "pair": Pair(1, [2]), "set": {3, 1},
             "color": Color.RED, "path": pathlib.PurePosixPath("/a/b"), "bytes": b"\x00\x01", "text": "é"}
    assert json.loads(dumps(value)) == {
        "arr": [[1, 2], [3, 4]], "f": 0.5, "b": True, "item": {"name": "x", "when": "2024-01-02"},
        "pair": {"a": 1, "b": [2]}, "set": [1, 3], "color": "red", "path": "/a/b", "bytes": "AAE=", "text": "é"}


def test_unconvertible_values_name_their_type():
    class Opaque:
        pass

    with pytest.raises(NotJSONable, match=r"test_jsonable\..*Opaque cannot be converted to JSON"):
        dumps({"x": Opaque()})


def test_nan_is_refused_rather_than_sent_as_invalid_json():
    with pytest.raises(NotJSONable, match="JSON cannot hold"):
        dumps({"x": float("nan")})
    with pytest.raises(NotJSONable):
        dumps(np.array([np.inf]))


def test_a_pil_image_becomes_base64_png():
    import base64
    import io

    from PIL import Image

    encoded = json.loads(dumps({"mask": Image.new("L", (3, 2), 7)}))["mask"]
    back = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert back.format == "PNG" and back.size == (3, 2) and back.getpixel((0, 0)) == 7
