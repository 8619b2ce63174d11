"""Arrays on the worker link: numpy's and torch's become Arrays the server reads without numpy."""

import base64
import json
import struct

import msgpack
import numpy as np
import pytest

from modelyard.arrays import Array, as_array
from modelyard.types.embedding import Embeddings
from modelyard.worker import protocol as wire


def roundtrip(value):
    unpacker = msgpack.Unpacker(raw=False, ext_hook=__import__("modelyard.arrays").arrays.ext_hook)
    unpacker.feed(wire.pack(["result", 1, value]))
    return next(unpacker)[2]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, ">f8"])
def test_floating_arrays_travel_as_little_endian_float32(dtype):
    matrix = np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, 7.0]], dtype=dtype)
    got = roundtrip(matrix)
    assert isinstance(got, Array) and got.dtype == "<f4" and got.shape == (2, 3)
    assert got.tolist() == matrix.astype(np.float32).tolist()
    assert base64.b64decode(got.row_base64(1)) == struct.pack("<3f", *matrix[1].astype(np.float32))


def test_integer_bool_and_scalar_values():
    assert roundtrip(np.arange(6, dtype=np.int64).reshape(2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert roundtrip(np.array([True, False])).tolist() == [True, False]
    assert roundtrip({"n": np.int64(7), "x": np.float32(0.5)}) == {"n": 7, "x": 0.5}


def test_a_typed_result_travels_as_a_dict_with_its_array():
    got = roundtrip(Embeddings(np.ones((1, 2)), prompt_tokens=3))
    assert got["prompt_tokens"] == 3 and got["vectors"].tolist() == [[1.0, 1.0]]


def test_torch_tensors_are_arrays_too():
    import torch  # a test dependency (the transformers engine's): this test must run, never skip
    got = roundtrip(torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16))
    assert got.dtype == "<f4" and got.tolist() == [[1.0, 2.0]]


def test_lists_of_floats_make_an_array_and_shapes_are_checked():
    made = Array.from_rows([[1.0, 2.0], [3.0, 4.0]])
    assert made.shape == (2, 2) and made.tolist() == [[1.0, 2.0], [3.0, 4.0]] and len(made) == 2
    with pytest.raises(ValueError, match="different lengths"):
        Array.from_rows([[1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="do not hold"):
        Array("<f4", (2, 2), b"\x00" * 12)
    assert as_array([1, 2]) is None  # plain lists travel as lists


def test_a_value_with_no_form_says_what_to_return():
    with pytest.raises(TypeError, match="cannot travel to the server"):
        wire.pack([object()])


def test_empty_dimensions_and_rows_out_of_range():
    got = roundtrip(np.zeros((3, 0), dtype=np.float32))
    assert got.shape == (3, 0) and got.tolist() == [[], [], []]
    assert roundtrip(np.zeros((2, 0, 3))).tolist() == [[], []]
    with pytest.raises(IndexError):
        Array.from_rows([[1.0]]).row_bytes(-1)


def test_a_typed_result_in_json_mode_keeps_its_vectors_as_lists():
    from modelyard import jsonable

    assert json.loads(jsonable.dumps(Embeddings(Array.from_rows([[1.0, 2.0]]), prompt_tokens=1))) == {
        "vectors": [[1.0, 2.0]], "prompt_tokens": 1, "row_tokens": None}
