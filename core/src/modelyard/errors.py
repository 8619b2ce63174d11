"""The errors modelyard raises, each carrying the HTTP status and error type it maps to.

The server shapes every one of them into the same JSON body; the client raises the same classes
from that body, so a caller catches `NotFound` whether it runs in-process or over HTTP.
"""

from __future__ import annotations


class ModelyardError(Exception):
    """Base class: `status` is the HTTP status, `type` the OpenAI-style error type."""

    status = 500
    type = "internal_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(ModelyardError):
    """The caller sent something that cannot be served as it is; the message says what to fix."""

    status = 400
    type = "invalid_request_error"


class Unauthenticated(ModelyardError):
    """No API key, or one that is unknown, revoked or expired."""

    status = 401
    type = "authentication_error"


class Forbidden(ModelyardError):
    """The server's settings do not allow this; the message names the setting that would."""

    status = 403
    type = "permission_error"


class NotFound(ModelyardError):
    status = 404
    type = "not_found_error"


class Conflict(ModelyardError):
    status = 409
    type = "conflict_error"


class LaunchFailed(InvalidRequest):
    """A model could not be launched: its launcher, engine or load step failed."""


class ModelError(ModelyardError):
    """The model's own code raised while serving a call; the model stays usable."""

    status = 500
    type = "model_error"


class Unavailable(ModelyardError):
    """The model cannot answer now: its worker died, is unhealthy or is not ready. `retry_after`:
    the seconds after which it may answer (a model that is launching or restarting)."""

    status = 503
    type = "service_unavailable"

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ModelBroken(Unavailable):
    """The model can no longer answer in this process (its library's engine died): the call gets a
    503, and the worker ends, so the model's restart policy brings a fresh one."""


class TooManyRequests(ModelyardError):
    """The model has as many requests in flight as its launch allows (`request_limits`)."""

    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, retry_after: int | None = 1):
        super().__init__(message)
        self.retry_after = retry_after


_BY_TYPE = {cls.type: cls for cls in (InvalidRequest, Unauthenticated, Forbidden, NotFound, Conflict, ModelError,
                                        Unavailable, TooManyRequests)}
_BY_STATUS = {cls.status: cls for cls in (InvalidRequest, Unauthenticated, Forbidden, NotFound, Conflict,
                                            Unavailable, TooManyRequests)}


def rebuild_error(error_type: str | None, status: int, message: str) -> ModelyardError:
    """The exception for an error that crossed a process or HTTP boundary as (type, status, message)."""
    cls = _BY_TYPE.get(error_type or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = InvalidRequest if 400 <= status < 500 else ModelyardError
    err = cls(message)
    err.status = status
    return err
