"""The rerank API: the request and answer shapes Xinference, Cohere and Jina clients share."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidRequest


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The uid of a running rerank model.")
    query: Any = Field(description="The text the documents are scored against.")
    documents: Any = Field(description="The texts to score: a list of strings.")
    top_n: Any = Field(None, description="Return the best N results only.")
    return_documents: bool | None = Field(None, description="Include each result's document text.")
    return_len: bool | None = Field(None, description="Count the tokens read in meta.tokens.")
    max_chunks_per_doc: int | None = Field(None, description="Not supported: leave it null.")
    kwargs: Any = Field(None, description="Xinference's extra parameters, as a JSON object or its string.")

    def engine_params(self) -> dict[str, Any]:
        """Parameters for the engine beyond the ability's own: `kwargs` (Xinference's client sends
        them as a JSON string) and anything else sent; the engine refuses by name what it cannot honour."""
        if self.max_chunks_per_doc is not None:
            raise InvalidRequest("max_chunks_per_doc is not supported: leave it out (documents longer than the "
                                 "model reads are cut at its max_tokens).")
        extra = self.kwargs
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"kwargs is not valid JSON: {exc}") from None
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise InvalidRequest("kwargs must be a JSON object.")
        return {**extra, **(self.model_extra or {})}


def reranked(result: dict[str, Any], return_documents: bool, return_len: bool) -> dict[str, Any]:
    """`result`: the engine's `Reranked` as it came over the link."""
    results = [{"index": hit["index"], "relevance_score": hit["relevance_score"],
                "document": {"text": hit["document"]} if return_documents else None}
               for hit in result["results"]]
    tokens = {"input_tokens": result["prompt_tokens"], "output_tokens": result["prompt_tokens"]} if return_len else None
    return {"id": str(uuid.uuid4()), "results": results,
            "meta": {"api_version": None, "billed_units": None, "tokens": tokens, "warnings": None}}
