"""Chat templates rendered in a sandbox.

A template comes from a registration or a model's tokenizer files, so it is somebody else's code:
it runs in Jinja's immutable sandbox, which refuses attribute tricks that reach Python's internals
and any change to the values it is given. The template sees what Hugging Face templates expect:
`messages`, `add_generation_prompt`, the special tokens (`bos_token`, `eos_token`, ...), the
request's `chat_template_kwargs`, `raise_exception` and `strftime_now`.
"""

from __future__ import annotations

import datetime
import functools
import json
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.sandbox
import jinja2.utils

from modelyard.errors import InvalidRequest

# What the renderer itself sets; a request's chat_template_kwargs may not replace them.
RESERVED = frozenset({"messages", "add_generation_prompt"})


class _TemplateRaised(Exception):
    """The template called raise_exception: its message is meant for the user."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes for HTML (<, >, &), which would change the prompt the model sees;
    # the argument order is the one Hugging Face templates are written against
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _Namespace(jinja2.utils.Namespace):
    """`namespace()` that stores no underscore names: they are the way into Python's internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805  (Jinja's own signature trick: `self` may be a key)
        self, rest = args[0], args[1:]
        for name in dict(*rest, **kwargs):
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, *rest, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a namespace may not hold the underscore name {name!r}")


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks the assistant's part for training masks; a
    prompt needs only its text."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return caller()


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> jinja2.Template:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols", _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now, namespace=_Namespace)
    return env.from_string(template)


def _with_reasoning_aliases(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier answers' reasoning under both names templates read: `reasoning_content` and `thinking`."""
    out = []
    for message in messages:
        reasoning = message.get("reasoning_content") if isinstance(message, dict) else None
        if reasoning is None and isinstance(message, dict):
            reasoning = message.get("thinking")
        out.append({"thinking": reasoning, **message, "reasoning_content": reasoning} if reasoning is not None
                   else message)
    return out


def render(template: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
           special_tokens: dict[str, Any] | None = None, template_kwargs: dict[str, Any] | None = None) -> str:
    """The prompt text of a conversation; a 400 when the template cannot render these messages."""
    reserved = sorted(RESERVED & set(template_kwargs or {}))
    if reserved:
        raise InvalidRequest(f"chat_template_kwargs may not set {', '.join(reserved)}: the request's own fields "
                             "decide them.")
    try:
        compiled = _compiled(template)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidRequest(f"This model's chat template is not valid Jinja (line {exc.lineno}: {exc.message}); "
                             "register it with a corrected chat_template.") from None
    tokens = {k: v for k, v in (special_tokens or {}).items() if isinstance(v, str)}
    context = {**tokens, "tools": None, "documents": None, **(template_kwargs or {}),
               "messages": _with_reasoning_aliases(messages), "add_generation_prompt": add_generation_prompt}
    try:
        return compiled.render(context)
    except _TemplateRaised as exc:
        raise InvalidRequest(f"The chat template refused these messages: {exc}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise InvalidRequest(f"The chat template tried something its sandbox forbids: {exc}") from None
    except Exception as exc:  # a template error on these messages (a missing key, a type it cannot handle)
        raise InvalidRequest(f"The chat template could not render these messages: {type(exc).__name__}: "
                             f"{exc}") from None


class HFTokenizerPrompts:
    """`encode_chat` and `encode` for an LLM engine whose `tokenizer` is a Hugging Face tokenizer
    (the transformers and vLLM engines): the chat through this sandbox, then tokenized as it is."""

    model_uid: str
    tokenizer: Any
    chat_template: str | None

    def encode_chat(self, messages: list[dict[str, Any]], template_kwargs: dict[str, Any]) -> list[int]:
        if not self.chat_template:
            raise InvalidRequest(f"Model {self.model_uid!r} has no chat template: use /v1/completions, or register "
                                 "it with a chat_template.")
        text = render(self.chat_template, messages, special_tokens=self.tokenizer.special_tokens_map,
                      template_kwargs=template_kwargs)
        # the template wrote the special tokens it wants; the tokenizer must not add its own again
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt)["input_ids"])
