"""One exception type per failure kind, the one table that maps them to HTTP status codes, and the exception
handlers that turn every failure (ours, FastAPI's validation, routing, a crash) into the API's one error body."""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.schemas import ErrorBody, ErrorCode, ErrorInfo

log = logging.getLogger("stepalign.critic")

STATUS: dict[ErrorCode, int] = {
    ErrorCode.invalid_request: 422,
    ErrorCode.unsupported_problem: 422,
    ErrorCode.segmentation_failed: 422,
    ErrorCode.payload_too_large: 413,
    ErrorCode.unsupported_media_type: 415,
    ErrorCode.unauthorized: 401,
    ErrorCode.not_found: 404,
    ErrorCode.method_not_allowed: 405,
    ErrorCode.rate_limited: 429,
    ErrorCode.overloaded: 503,
    ErrorCode.not_ready: 503,
    ErrorCode.invalid_critique: 502,
    ErrorCode.engine_error: 502,
    ErrorCode.timeout: 504,
    ErrorCode.internal: 500,
}


class ServiceError(Exception):
    """Base of every error the service reports; carries the body it is answered with."""

    code: ClassVar[ErrorCode] = ErrorCode.internal

    def __init__(
        self,
        message: str,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.retry_after = retry_after
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message, details=self.details)

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.info())

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after)))
        return headers


class InvalidRequest(ServiceError):
    code = ErrorCode.invalid_request


class UnsupportedProblem(ServiceError):
    code = ErrorCode.unsupported_problem


class SegmentationFailed(ServiceError):
    code = ErrorCode.segmentation_failed


class PayloadTooLarge(ServiceError):
    code = ErrorCode.payload_too_large


class UnsupportedMediaType(ServiceError):
    code = ErrorCode.unsupported_media_type


class Unauthorized(ServiceError):
    code = ErrorCode.unauthorized


class NotFound(ServiceError):
    code = ErrorCode.not_found


class MethodNotAllowed(ServiceError):
    code = ErrorCode.method_not_allowed


class RateLimited(ServiceError):
    code = ErrorCode.rate_limited


class Overloaded(ServiceError):
    code = ErrorCode.overloaded


class NotReady(ServiceError):
    code = ErrorCode.not_ready


class InvalidCritique(ServiceError):
    code = ErrorCode.invalid_critique


class EngineFailure(ServiceError):
    code = ErrorCode.engine_error


class EngineTimeout(ServiceError):
    code = ErrorCode.timeout


class InternalError(ServiceError):
    code = ErrorCode.internal


def error_response(exc: ServiceError) -> JSONResponse:
    return JSONResponse(exc.body().model_dump(mode="json"), status_code=exc.status, headers=exc.response_headers())


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    """pydantic errors as {loc, msg, type}; the offending input is not echoed (it can be large, or a secret)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
    ]


def summarize(details: list[dict[str, Any]], skip: int = 0) -> str:
    """'field.path: message; ...' for the first few errors, for the one-line error message (`skip` drops the
    leading 'body' of FastAPI's locations)."""
    parts = []
    for d in details[:5]:
        where = ".".join(d["loc"][skip:])
        msg = str(d["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _bad_json(exc: json.JSONDecodeError) -> InvalidRequest:
    return InvalidRequest(
        f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        details=[{"line": exc.lineno, "column": exc.colno, "msg": exc.msg}],
    )


def _unparsable_body(cause: BaseException | None) -> InvalidRequest:
    """FastAPI answers 400 'error parsing the body' for everything but a JSON syntax error; say what it was."""
    if isinstance(cause, UnicodeDecodeError):
        bad = cause.object[cause.start : cause.start + 1].hex()
        return InvalidRequest(
            f"the body is not valid UTF-8 text: byte 0x{bad} at offset {cause.start} ({cause.reason})",
            details=[{"offset": cause.start, "msg": cause.reason}],
        )
    if isinstance(cause, RecursionError):
        return InvalidRequest("the body's JSON is nested too deeply")
    reason = f"{type(cause).__name__}: {cause}" if cause is not None else "unknown reason"
    return InvalidRequest(f"the body could not be read as JSON ({reason})")


def _count(request: Request, code: ErrorCode) -> None:
    service = getattr(request.app.state, "service", None)
    if service is not None:
        service.metrics.error(code.value, getattr(request.state, "key_name", None))


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves as `{"error": {"code", "message", "details"}}` with the status of `STATUS`."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        _count(request, exc.code)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if isinstance(exc.__cause__, json.JSONDecodeError):
            err = _bad_json(exc.__cause__)
        elif errors and tuple(errors[0].get("loc", ())) == ("body",) and errors[0].get("type") == "missing":
            err = InvalidRequest("the request has no body: send a JSON object (Content-Type: application/json)")
        else:
            details = validation_details(errors)
            err = InvalidRequest(f"invalid request: {summarize(details, skip=1)}", details=details)
        _count(request, err.code)
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing raises 404 and 405; FastAPI's body parsing raises 400. Anything else is an internal error.
        err: ServiceError
        if exc.status_code == 404:
            err = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            err = MethodNotAllowed(
                f"{request.method} is not allowed on {request.url.path}; allowed: {allow}", headers={"Allow": allow}
            )
        elif exc.status_code == 400:
            err = _unparsable_body(exc.__cause__)
        else:
            err = InternalError(f"unexpected HTTP error {exc.status_code}: {exc.detail}")
        _count(request, err.code)
        return error_response(err)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        _count(request, ErrorCode.internal)
        return error_response(InternalError(f"internal error: {type(exc).__name__}"))
