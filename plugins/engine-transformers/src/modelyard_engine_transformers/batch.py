"""The transformers engine's batch steps (core's `modelyard.llm.scheduler`): one KV cache for the
running batch, its rows left-padded to one length, and a sampler per row. Imported only inside
the worker.

The prompts of the newcomers run together, into a cache of their own (left-padded to the longest);
it then joins the batch's cache, the shorter side padded on the left, the padding masked out. Each
row's positions count its own tokens only, so a row's keys, values and attention are what they
would be alone, and its greedy tokens equal its solo ones. A row that leaves is cut out, with the
padding no row needs any more.
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from modelyard.llm.params import GenerateParams
from modelyard.llm.scheduler import Sequence


def batchable(model: Any) -> str | None:
    """Why this model's cache cannot be batched here (None when it can): the batch's cache is
    rebuilt from plain key/value tensors, which a sliding-window or recurrent layer is not."""
    try:
        cache = DynamicCache(config=model.config)
    except Exception as exc:  # a config the cache cannot read: generate alone
        return f"its cache cannot be built from its config ({type(exc).__name__}: {exc})"
    kinds = {type(layer).__name__ for layer in cache.layers}
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        return f"its cache has {', '.join(sorted(kinds))} layers"
    return None


class TransformersBatchSteps:
    def __init__(self, model: Any) -> None:
        self.model = model
        parameters = inspect.signature(model.forward).parameters
        # transformers 5 names it `cache`; 4.x `past_key_values`
        self.cache_keyword = "cache" if "cache" in parameters else "past_key_values"
        self.last_logits = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, cache length]: 1 for a real token, 0 for padding
        self.lengths: list[int] = []  # each row's real tokens in the cache

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache: DynamicCache) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **self.last_logits, **{self.cache_keyword: cache})
        return out.logits[:, -1, :].float()

    def join(self, sequences: list[Sequence]) -> list[int]:
        width = max(len(s.prompt_ids) for s in sequences)
        ids = torch.tensor([[0] * (width - len(s.prompt_ids)) + s.prompt_ids for s in sequences])
        mask = torch.tensor([[0] * (width - len(s.prompt_ids)) + [1] * len(s.prompt_ids) for s in sequences])
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache()
        with torch.inference_mode():
            logits = self._forward(ids, mask, positions, cache)
        tokens = []
        for row, sequence in enumerate(sequences):
            sequence.state = _Sampler(sequence.params, sequence.prompt_ids)
            tokens.append(sequence.state.sample(logits[row], sequence.tokens))
        self._append(cache, mask)
        self.lengths += [len(s.prompt_ids) for s in sequences]
        return tokens

    def step(self, sequences: list[Sequence]) -> list[int]:
        assert self.cache is not None and self.mask is not None
        last = torch.tensor([[s.tokens[-1]] for s in sequences])
        positions = torch.tensor([[n] for n in self.lengths])
        self.mask = torch.cat([self.mask, torch.ones(len(sequences), 1, dtype=torch.long)], dim=1)
        with torch.inference_mode():
            logits = self._forward(last, self.mask, positions, self.cache)
        self.lengths = [n + 1 for n in self.lengths]
        if all(s.state.greedy_only for s in sequences):
            return logits.argmax(dim=-1).tolist()
        return [s.state.sample(logits[row], s.tokens) for row, s in enumerate(sequences)]

    def leave(self, rows: list[int]) -> None:
        gone = set(rows)
        keep = [row for row in range(len(self.lengths)) if row not in gone]
        if not keep:
            self.cache, self.mask, self.lengths = None, None, []
            return
        assert self.cache is not None and self.mask is not None
        mask = self.mask[keep]
        # the columns on the left that are padding in every kept row go too
        start = int((mask.sum(dim=0) > 0).to(torch.long).argmax())
        index = torch.tensor(keep)
        self.cache = DynamicCache(ddp_cache_data=[(layer.keys[index, :, start:], layer.values[index, :, start:])
                                                  for layer in self.cache.layers])
        self.mask = mask[:, start:]
        self.lengths = [self.lengths[row] for row in keep]

    def _append(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Add the newcomers' cache as the batch's last rows."""
        if self.cache is None or self.mask is None:
            self.cache, self.mask = cache, mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        self.cache = DynamicCache(ddp_cache_data=[
            (torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)]),
             torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)]))
            for old, new in zip(self.cache.layers, cache.layers, strict=True)])
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(mask, width)])


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros before `tensor`'s sequence dimension (the last but one of keys and values, the last of
    a mask) up to `width`."""
    dim = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class _Sampler:
    """One row's next token from its logits, with its request's own parameters and random generator
    (seeded by its `seed`, so a seeded request samples the same tokens alone or in a batch)."""

    def __init__(self, params: GenerateParams, prompt_ids: list[int]) -> None:
        self.params = params
        self.prompt = torch.tensor(prompt_ids, dtype=torch.long)
        self.penalised = params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty
        self.greedy_only = params.temperature == 0 and not self.penalised
        self.generator = None
        if params.temperature > 0:
            self.generator = torch.Generator().manual_seed(
                params.seed if params.seed is not None else random.getrandbits(63))

    def sample(self, logits: torch.Tensor, generated: list[int]) -> int:
        p = self.params
        if self.penalised:
            logits = self._penalise(logits.clone(), generated)
        if p.temperature == 0:
            return int(logits.argmax())
        logits = logits / p.temperature
        if p.top_k and p.top_k < logits.shape[-1]:
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            # keep the most likely tokens whose mass before them is under top_p (at least one)
            drop = (cumulative - ordered.softmax(dim=-1)) >= p.top_p
            logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
        return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=self.generator))

    def _penalise(self, logits: torch.Tensor, generated: list[int]) -> torch.Tensor:
        p = self.params
        made = torch.tensor(generated, dtype=torch.long)
        if p.repetition_penalty != 1.0:  # transformers' rule, over the prompt and the answer so far
            seen = torch.cat([self.prompt, made]).unique()
            scores = logits[seen]
            logits[seen] = torch.where(scores < 0, scores * p.repetition_penalty, scores / p.repetition_penalty)
        if (p.presence_penalty or p.frequency_penalty) and len(generated):  # OpenAI's, over the answer
            counts = torch.bincount(made, minlength=logits.shape[-1]).to(logits.dtype)
            logits = logits - p.frequency_penalty * counts - p.presence_penalty * (counts > 0).to(logits.dtype)
        return logits
