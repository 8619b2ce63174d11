"""Routes that plugins add through the `register_routes` hook, mounted with the scopes they declare.

A plugin hands over a FastAPI router. Each of its routes is mounted again as a `ScopedRoute`, so the
scope check runs whatever route class the plugin used: a route needs the scopes it declares
(`modelyard_server.auth.scopes(...)` in its `openapi_extra`), else the scopes the plugin registered
the router with, else `admin`. A route may not take a path and method the server or an earlier plugin
serves; `uploads` names the paths that take multipart bodies (the guard refuses them elsewhere).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from modelyard.plugins import Plugins
from modelyard_server.auth import scoped


def mount_plugin_routes(app: FastAPI, plugins: Plugins) -> set[str]:
    """Mount every plugin's routes on `app`; the upload paths among them."""
    upload_paths: set[str] = set()
    taken = {(route.path, method) for route in app.router.routes if isinstance(route, APIRoute)
             for method in route.methods}

    def add(plugin: str, router: APIRouter, scopes: Iterable[str] = (), uploads: Iterable[str] = (),
            **rest: Any) -> tuple[list[str], list[str]]:
        if rest:
            raise TypeError(f"unknown arguments {', '.join(sorted(rest))}")
        if not isinstance(router, APIRouter):
            raise TypeError(f"register_routes takes a fastapi.APIRouter, not a {type(router).__name__}")
        route_class = scoped(*(tuple(scopes) or ("admin",)))
        added, refused = [], []
        for route in router.routes:
            if not isinstance(route, APIRoute):
                refused.append(f"route {getattr(route, 'path', route)!r} is not an HTTP route; only those are served")
                continue
            clash = sorted(m for m in route.methods if (route.path, m) in taken)
            if clash:
                refused.append(f"route {', '.join(clash)} {route.path} is already served; it was not added")
                continue
            app.router.add_api_route(
                route.path, route.endpoint, methods=sorted(route.methods), name=route.name,
                response_model=route.response_model, status_code=route.status_code, tags=route.tags,
                dependencies=route.dependencies, summary=route.summary, description=route.description,
                responses=route.responses, openapi_extra=route.openapi_extra, response_class=route.response_class,
                include_in_schema=route.include_in_schema, route_class_override=route_class)
            taken.update((route.path, m) for m in route.methods)
            added.append(f"{'/'.join(sorted(route.methods))} {route.path}")
        upload_paths.update(uploads)
        return added, refused

    plugins.register_routes(add)
    return upload_paths
