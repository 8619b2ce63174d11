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
import jinja2.sandbox

from modelyard.errors import InvalidRequest


class _TemplateRaised(Exception):
    """The template called raise_exception: its message is meant for the user."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False,
            ensure_ascii: bool = False) -> str:
    # Jinja's own tojson escapes for HTML (<, >, &), which would change the prompt the model sees
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii)


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> jinja2.Template:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return env.from_string(template)


def render(template: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
           special_tokens: dict[str, Any] | None = None, **template_kwargs: Any) -> str:
    """The prompt text of a conversation; a 400 when the template cannot render these messages."""
    try:
        compiled = _compiled(template)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidRequest(f"This model's chat template is not valid Jinja (line {exc.lineno}: {exc.message}); "
                             "register it with a corrected chat_template.") from None
    tokens = {k: v for k, v in (special_tokens or {}).items() if isinstance(v, str)}
    try:
        return compiled.render(**{**tokens, **template_kwargs, "messages": messages,
                                  "add_generation_prompt": add_generation_prompt})
    except _TemplateRaised as exc:
        raise InvalidRequest(f"The chat template refused these messages: {exc}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise InvalidRequest(f"The chat template tried something its sandbox forbids: {exc}") from None
    except Exception as exc:  # a template error on these messages (a missing key, a type it cannot handle)
        raise InvalidRequest(f"The chat template could not render these messages: {type(exc).__name__}: "
                             f"{exc}") from None
