"""Embedding: text to vectors (OpenAI's /v1/embeddings).

An engine subclasses `EmbeddingEngine` and implements `embed_batch(texts) -> Embeddings`: the
vectors as one matrix (a numpy array, a torch tensor, an `Array`, or lists) and the tokens read,
per input where it can (`row_tokens`). The base checks the input (strings, or token ids the
engine's `detokenize` turns back into text), gathers the texts of concurrent requests into
batches (`BatchingEngine`), gives each request exactly its own rows, shortens vectors to
`dimensions` where the model allows it, and refuses an input longer than the model reads when
truncation is off.
"""

from __future__ import annotations

import array
import math
import sys
from dataclasses import dataclass
from typing import Any

from modelyard.arrays import Array, as_array
from modelyard.errors import InvalidRequest, ModelError
from modelyard.types import FlatRegistration, ModelType, StrOrList
from modelyard.types.engine import BatchingEngine


class EmbeddingRegistration(FlatRegistration):
    version: int | None = None
    dimensions: int | None = None
    #: the most tokens of an input the model reads; longer inputs are cut there, or refused when
    #: the request (or the launch) turns truncation off
    max_tokens: int | None = None
    language: StrOrList = []
    #: the model was trained so that a vector's leading dimensions embed on their own
    #: (Matryoshka): `dimensions` in a request may then ask for shorter vectors
    matryoshka: bool = False
    flat_format = "pytorch"  # Xinference's classic flat template names no format


@dataclass
class Embeddings:
    """`vectors`: one row per input, in input order; `prompt_tokens`: the tokens the inputs took;
    `row_tokens`: each input's, where the engine counts them (a batch's count is then shared out exactly)."""

    vectors: Any
    prompt_tokens: int
    row_tokens: list[int] | None = None


def as_matrix(vectors: Any) -> Array:
    """An engine's vectors as a float32 matrix."""
    found = vectors if isinstance(vectors, Array) else as_array(vectors)
    if found is None or (found.dtype != "<f4" and len(found.shape) == 2):  # lists, or an Array of another type
        found = Array.from_rows([[float(x) for x in row] for row in (found.tolist() if found is not None else vectors)])
    if found.dtype != "<f4" or len(found.shape) != 2:
        raise ModelError(f"embed_batch returned an array of {found.dtype} and shape {found.shape}, "
                         "not a float matrix of one row per input")
    return found


def _shortened(row: bytes, dimensions: int, normalize: bool) -> bytes:
    """The leading `dimensions` of a float32 row, scaled back to length 1 if `normalize`."""
    values = array.array("f")
    values.frombytes(row)
    if sys.byteorder == "big":
        values.byteswap()
    values = values[:dimensions]
    norm = (math.sqrt(sum(x * x for x in values)) or 1.0) if normalize else 1.0
    out = array.array("f", (x / norm for x in values))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


class EmbeddingEngine(BatchingEngine):
    #: Request parameters, beyond `dimensions` and `truncate` (which the base handles), the engine honours.
    supported_params: frozenset[str] = frozenset()
    #: Whether an input longer than `max_tokens` is cut there (True) or refused, unless the request says.
    truncate: bool = True
    #: The model's own vector length, where the engine knows it at load.
    dimensions: int | None = None
    #: The most tokens of an input the model reads, where the engine knows it at load (else the
    #: registration's `max_tokens`).
    max_tokens: int | None = None
    #: Whether the engine's vectors are unit length: vectors shortened to `dimensions` are then too.
    normalized: bool = True

    registration: EmbeddingRegistration

    async def embed(self, input: Any, **params: Any) -> Embeddings:
        texts = self.texts_of(input)
        dimensions = params.pop("dimensions", None)
        truncate = params.pop("truncate", None)
        params = self.refuse_unsupported(params, "embed")
        self._check_dimensions(dimensions)
        if truncate is not None and not isinstance(truncate, bool):
            raise InvalidRequest(f"truncate must be true or false, got {truncate!r}.")
        limit = self.max_tokens or self.registration.max_tokens
        if limit and not (self.truncate if truncate is None else truncate):
            counts = await self.batcher().in_thread(self.count_tokens, texts)
            for i, count in enumerate(counts):
                if count > limit:
                    raise InvalidRequest(f"input[{i}] is {count} tokens long; this model reads at most {limit}. "
                                         "Shorten it, or allow truncation (truncate: true).")
        rows = await self.gathered(texts, params)
        width = len(rows[0][0]) // 4
        if any(len(vector) != width * 4 for vector, _ in rows):
            raise ModelError(f"{type(self).__name__}.embed_batch returned vectors of different lengths")
        if dimensions is not None and dimensions > width:
            raise InvalidRequest(f"dimensions {dimensions} is more than this model's {width}.")
        if dimensions is not None and dimensions < width:
            vectors = b"".join(_shortened(vector, dimensions, self.normalized) for vector, _ in rows)
            width = dimensions
        else:
            vectors = b"".join(vector for vector, _ in rows)
        return Embeddings(Array("<f4", (len(texts), width), vectors), sum(tokens for _, tokens in rows))

    def texts_of(self, value: Any) -> list[str]:
        """OpenAI's input forms as texts: a string, a list of strings, a list of token ids, or a
        list of those lists (token ids go back to text through the engine's `detokenize`)."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise InvalidRequest("input must be a string, a non-empty list of strings, a list of token ids, or a "
                                 "list of token-id lists.")
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            value = [value]  # one input, as token ids
        texts = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                if not item:
                    raise InvalidRequest(f"input[{i}] is an empty string; every input needs some text.")
                texts.append(item)
            elif isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                         for t in item):
                texts.append(self.detokenize(item))
            else:
                raise InvalidRequest(f"input[{i}] must be a non-empty string or a non-empty list of token ids, "
                                     f"not {type(item).__name__}.")
        return texts

    def _check_dimensions(self, dimensions: Any) -> None:
        if dimensions is None:
            return
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise InvalidRequest(f"dimensions must be a positive whole number, got {dimensions!r}.")
        full = self.dimensions or self.registration.dimensions
        if full and dimensions > full:
            raise InvalidRequest(f"dimensions {dimensions} is more than this model's {full}.")
        if dimensions != full and not self.registration.matryoshka:
            size = f"This model's vectors have {full} dimensions, and it" if full else "This model"
            raise InvalidRequest(f"{size} was not trained for shorter vectors (register it with matryoshka: true if "
                                 "it was); leave dimensions out.")

    def run_rows(self, rows: list[str], params: dict[str, Any]) -> list[tuple[bytes, int]]:
        found = self.embed_batch(rows, **params)
        matrix = as_matrix(found.vectors)
        if len(matrix) != len(rows):
            raise ModelError(f"{type(self).__name__}.embed_batch returned {len(matrix)} vectors for {len(rows)} inputs")
        tokens = found.row_tokens
        if tokens is None or len(tokens) != len(rows):  # shared out by length: exact for one request alone
            lengths = [len(r) for r in rows]
            total = sum(lengths) or 1
            tokens = [found.prompt_tokens * n // total for n in lengths]
            tokens[-1] += found.prompt_tokens - sum(tokens)
        return [(matrix.row_bytes(i), int(tokens[i])) for i in range(len(rows))]

    # -- what an engine implements ---------------------------------------------------------

    def embed_batch(self, texts: list[str], **params: Any) -> Embeddings:
        raise NotImplementedError(f"{type(self).__name__} does not implement embed_batch()")

    def detokenize(self, ids: list[int]) -> str:
        """The text of token ids in this model's vocabulary."""
        raise InvalidRequest("This model's engine takes text input only, not token ids.")

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Each text's length in tokens, as the model reads it (without truncation)."""
        raise InvalidRequest("This model's engine cannot count tokens, so it cannot refuse long inputs: leave "
                             "truncate out.")


EMBEDDING = ModelType(
    name="embedding",
    schema=EmbeddingRegistration,
    abilities=("embed",),
    routes=("/v1/embeddings",),
)
