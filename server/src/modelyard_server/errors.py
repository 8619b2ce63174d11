"""The one place that shapes every error answer.

Every error, ours or FastAPI's, leaves as `{"detail": message, "error": {"message", "type",
"param", "code"}}`: `detail` for Xinference clients, `error` for OpenAI clients.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.errors import ModelyardError

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
          413: "invalid_request_error", 415: "invalid_request_error", 421: "invalid_request_error",
          422: "invalid_request_error", 503: "service_unavailable"}


def error_response(status: int, message: str, error_type: str | None = None, param: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(status, message, error_type, param))


def error_body(status: int, message: str, error_type: str | None = None, param: str | None = None) -> dict:
    error_type = error_type or _TYPES.get(status, "internal_error")
    return {"detail": message, "error": {"message": message, "type": error_type, "param": param, "code": status}}


def _describe(errors: list[dict]) -> tuple[str, str | None, bool]:
    """A message naming each bad field, the first field's name, and whether the body was not JSON."""
    parts, first, not_json = [], None, False
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        where = ".".join(loc) or "body"
        first = first or where
        if err.get("type") == "json_invalid":
            not_json = True
            parts.append(f"the request body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})")
        else:
            parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts), first, not_json


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ModelyardError)
    async def _ours(_request: Request, exc: ModelyardError) -> JSONResponse:
        response = error_response(exc.status, exc.message, exc.type)
        if exc.status == 401:
            response.headers["www-authenticate"] = "Bearer"
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["retry-after"] = str(retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, not_json = _describe(exc.errors())
        return error_response(400 if not_json else 422, f"Invalid request: {message}", param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response = error_response(exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"Internal server error: {type(exc).__name__}: {exc}")
