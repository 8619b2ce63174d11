"""Who may call which route: every route states its scope, and keys carry scopes.

The request guard (guard.py) reads the `Authorization: Bearer` header once and leaves what it found
in the ASGI scope: nothing while keys are off, else the key or why there is none. Each route is a
`ScopedRoute` that knows its scopes from its declaration, so the check costs one look-up once the
router has matched; a route that declares none needs `admin`.

| scope | routes |
|---|---|
| public | /status, /v1/cluster/auth, FastAPI's /openapi.json, /docs, /redoc |
| inference | chat, completions, flexible infers; GET /v1/models (only the models the key may use) |
| models:read | describe, progress, logs, events, engines, GET registrations, /metrics (public with --metrics-public) |
| models:launch | launch, terminate, cancel |
| models:register | register, unregister |
| admin | keys, plugins, virtualenvs, and every route that declares no scope |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute

from modelyard.errors import Forbidden, Unauthenticated
from modelyard.keys import ApiKey, KeyStore
from modelyard_server.protocol import ERROR_RESPONSES

PUBLIC = "public"
SCOPE_KEY = "modelyard.key"  # in the ASGI scope: an ApiKey, MISSING or INVALID; absent while keys are off
MISSING = "missing"
INVALID = "invalid"


class Authentication:
    """The server's keys, shared by the guard and the routes; set when the app starts."""

    def __init__(self) -> None:
        self.keys: KeyStore | None = None

    def identify(self, authorization: bytes | None) -> ApiKey | str | None:
        """What the guard puts in the scope: None while keys are off."""
        keys = self.keys
        if keys is None:
            return None
        keys.refresh()
        if not keys.enabled:
            return None
        if authorization is None:
            return MISSING
        scheme, _, value = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return INVALID
        return keys.authenticate(value.strip()) or INVALID


def scopes(*names: str) -> dict[str, Any]:
    """A route's `openapi_extra` declaring its scopes (any one of them is enough)."""
    return {"x-scopes": list(names)}


def request_key(request: Request) -> ApiKey | None:
    """The key a request came with; None while keys are off (and on public routes)."""
    found = request.scope.get(SCOPE_KEY)
    return found if isinstance(found, ApiKey) else None


def key_id(request: Request) -> str | None:
    key = request_key(request)
    return key.id if key is not None else None


def require_model(request: Request, *names: str | None) -> None:
    """An inference key limited to some models may call only those (by uid or model name)."""
    key = request_key(request)
    if key is not None and not key.may_use(*names):
        raise Forbidden(f"This API key may not use model {names[0]!r}: it is limited to "
                        f"{', '.join(key.models)}.")


def check(found: ApiKey | str | None, needed: tuple[str, ...]) -> None:
    if found is None or PUBLIC in needed:
        return
    if found == MISSING:
        raise Unauthenticated("This server requires an API key: send it as 'Authorization: Bearer <key>' (the "
                              "openai SDK's and xinference-client's api_key, modelyard's --api-key or "
                              "MODELYARD_API_KEY).")
    if found == INVALID:
        raise Unauthenticated("The API key is not valid: it is unknown, revoked or expired.")
    if not any(found.allows(scope) for scope in needed):
        raise Forbidden(f"This API key lacks the scope this route needs: {' or '.join(needed)} "
                        f"(it has {', '.join(found.scopes)}).")


class ScopedRoute(APIRoute):
    """A route that checks its scopes before its body is read; `default_scopes` come from its router."""

    default_scopes: tuple[str, ...] = ("admin",)

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        extra = dict(kwargs.get("openapi_extra") or {})
        self.scopes = tuple(extra.get("x-scopes") or self.default_scopes)
        extra["x-scopes"] = list(self.scopes)  # the published document says what each route needs
        kwargs["openapi_extra"] = extra
        kwargs["responses"] = {**ERROR_RESPONSES, **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        needed = self.scopes

        async def scoped_handler(request: Request) -> Any:
            check(request.scope.get(SCOPE_KEY), needed)
            return await handler(request)

        return scoped_handler


def scoped(*default: str) -> type[ScopedRoute]:
    """The route class of a router whose routes need `default` unless they declare otherwise."""
    return type("ScopedRoute", (ScopedRoute,), {"default_scopes": default})
