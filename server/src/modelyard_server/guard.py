"""The browser's way in, closed: one pure-ASGI layer in front of every route.

A page in the user's browser can reach a server on loopback two ways: by DNS rebinding (its own
host name now resolving to 127.0.0.1, so the request carries a foreign `Host`), and by a "simple"
cross-site request (a form or `fetch` posting text/plain, multipart or a bare body, which the
browser sends without asking first). So:

- a `Host` that is not a loopback name, the bound address or one of `--allowed-hosts`: 421;
- a request that changes state or runs a model (any method but GET/HEAD/OPTIONS) whose `Origin`
  is neither the server itself nor one of `--cors-origins`: 403, bodyless requests included;
- a body that is not JSON: 415 (every route reads JSON; upload routes name their own types);
- a body over its route's limit: 413, before it is read (a declared length is checked at once, a
  chunked body as it arrives);
- CORS headers only for the origins `--cors-origins` names;
- with keys on, the request's key (or its lack) noted for the route to check (auth.py).

It reads the headers once per request and keeps no state but a small cache of Host decisions.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from fastapi import HTTPException

from modelyard_server.auth import SCOPE_KEY, Authentication
from modelyard_server.errors import error_body

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
CORS_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = b"authorization, content-type"
HOST_CACHE_SIZE = 256


def _host_name(value: str) -> str:
    """`Host` without its port, lower-case, IPv6 without brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") > 1:
        return value  # a bare IPv6 address (a bind address; a Host header brackets it)
    name, sep, port = value.rpartition(":")
    return name.rstrip(".") if sep and port.isdigit() else value.rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether a host name or address (with or without a port) never leaves this machine."""
    return _is_loopback(_host_name(host))


def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True  # RFC 6761: these names never leave the machine
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def machine_names() -> set[str]:
    """This machine's host names and addresses: what a client elsewhere puts in `Host`."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            for info in socket.getaddrinfo(name, None):
                names.add(str(info[4][0]).lower())
        except OSError:
            pass
    return names


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class RequestGuard:
    def __init__(self, app: Any, *, bind_host: str, allowed_hosts: Iterable[str] = (),
                 cors_origins: Iterable[str] = (), authentication: Authentication | None = None,
                 max_body_bytes: int = 16 << 20, max_upload_bytes: int = 25 << 20,
                 upload_paths: Iterable[str] = ()):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_paths = frozenset(upload_paths)  # routes that take multipart uploads
        self.authentication = authentication or Authentication()
        patterns = {_host_name(h) if "*" not in h else h.lower() for h in allowed_hosts}
        if _host_name(bind_host) in WILDCARD_BINDS:
            if not patterns:
                patterns = machine_names()  # bound to every address: the machine's own names are its
        else:
            patterns.add(_host_name(bind_host))
        self.any_host = "*" in patterns
        self.host_names = frozenset(p for p in patterns if "*" not in p)
        self.host_patterns = tuple(p for p in patterns if "*" in p and p != "*")
        self.cors_origins = frozenset(o.rstrip("/").encode("latin-1") for o in cors_origins)
        self.any_origin = b"*" in self.cors_origins
        self._hosts: dict[bytes, bool] = {}

    def _host_allowed(self, host: bytes) -> bool:
        known = self._hosts.get(host)
        if known is None:
            name = _host_name(host.decode("latin-1"))
            known = (self.any_host or name in self.host_names or _is_loopback(name)
                     or any(fnmatchcase(name, p) for p in self.host_patterns))
            if len(self._hosts) >= HOST_CACHE_SIZE:
                self._hosts.clear()
            self._hosts[host] = known
        return known

    def _cors_allowed(self, origin: bytes) -> bool:
        return self.any_origin or origin in self.cors_origins

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = content_type = preflight = authorization = length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"authorization":
                authorization = value
            elif name == b"origin":
                origin = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"access-control-request-method":
                preflight = value
        if host is not None and not self._host_allowed(host):
            await _refuse(send, 421, f"This server does not answer for the host name "
                                     f"{_host_name(host.decode('latin-1'))!r}: a request must name it by a "
                                     "loopback name, its bound address or a name given with --allowed-hosts "
                                     "(MODELYARD_ALLOWED_HOSTS).")
            return
        method = scope["method"]
        cross_site = False
        if origin is not None:
            same_origin = host is not None and origin.partition(b"://")[2].lower() == host.lower()
            cross_site = not same_origin
            if cross_site and self.cors_origins and method == "OPTIONS" and preflight is not None:
                await self._preflight(scope, origin, send)
                return
            if cross_site and method not in SAFE_METHODS and not self._cors_allowed(origin):
                await _refuse(send, 403, f"Requests from the web page at {origin.decode('latin-1')!r} may not "
                                         "change this server or run its models; to allow that origin, start the "
                                         "server with --cors-origins (MODELYARD_CORS_ORIGINS) naming it.")
                return
        upload = scope["path"] in self.upload_paths
        limit = self.max_upload_bytes if upload else self.max_body_bytes
        size = _length(length)
        if size is not None and size > limit:
            await _refuse(send, 413, _too_large(size, limit, upload), close=True)
            return
        has_body = chunked or bool(size)
        if has_body and method not in SAFE_METHODS and not (_is_json(content_type) or upload):
            given = content_type.decode("latin-1") if content_type else "none"
            await _refuse(send, 415, f"The request body must be JSON, sent with 'Content-Type: application/json' "
                                     f"(this request's content type: {given}).")
            return
        key = self.authentication.identify(authorization)
        if key is not None:
            scope[SCOPE_KEY] = key  # each route checks it against its scopes (auth.py)
        if chunked:
            receive = _limited(receive, limit, upload)
        if cross_site and self.cors_origins and self._cors_allowed(origin):
            await self.app(scope, receive, _with_cors(send, origin))
            return
        await self.app(scope, receive, send)

    async def _preflight(self, scope: dict, origin: bytes, send: Any) -> None:
        if not self._cors_allowed(origin):
            await _refuse(send, 403, f"The origin {origin.decode('latin-1')!r} is not one of --cors-origins.")
            return
        asked = next((v for k, v in scope["headers"] if k == b"access-control-request-headers"), CORS_HEADERS)
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"access-control-allow-origin", origin), (b"access-control-allow-methods", CORS_METHODS),
            (b"access-control-allow-headers", asked), (b"access-control-max-age", b"600"), (b"vary", b"origin")]})
        await send({"type": "http.response.body", "body": b""})


def _length(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the HTTP parser refuses a malformed length before we see it


def _too_large(size: int, limit: int, upload: bool) -> str:
    setting = "MODELYARD_MAX_UPLOAD_MB" if upload else "MODELYARD_MAX_BODY_MB"
    return (f"The request body is {'over ' if size > limit else ''}{size / 2**20:.1f} MiB; this route takes at most "
            f"{limit / 2**20:g} MiB (the server's setting {setting}).")


def _limited(receive: Any, limit: int, upload: bool) -> Any:
    """`receive` that fails with a 413 once a chunked body passes `limit`, before more is read."""
    seen = 0

    async def receive_limited() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, _too_large(seen, limit, upload), headers={"connection": "close"})
        return message

    return receive_limited


def _with_cors(send: Any, origin: bytes) -> Any:
    async def send_with_cors(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (b"access-control-allow-origin", origin),
                                              (b"vary", b"origin")]}
        await send(message)

    return send_with_cors


async def _refuse(send: Any, status: int, message: str, close: bool = False) -> None:
    body = json.dumps(error_body(status, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the client may still be sending a body we will not read
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
