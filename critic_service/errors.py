"""One exception type per failure kind, and the one table that maps them to HTTP status codes."""

from __future__ import annotations

from typing import Any, ClassVar

from shared.schemas import ErrorBody, ErrorCode, ErrorInfo

STATUS: dict[ErrorCode, int] = {
    ErrorCode.invalid_request: 422,
    ErrorCode.unsupported_problem: 422,
    ErrorCode.segmentation_failed: 422,
    ErrorCode.payload_too_large: 413,
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

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message, details=self.details)

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.info())


class InvalidRequest(ServiceError):
    code = ErrorCode.invalid_request


class UnsupportedProblem(ServiceError):
    code = ErrorCode.unsupported_problem


class SegmentationFailed(ServiceError):
    code = ErrorCode.segmentation_failed


class PayloadTooLarge(ServiceError):
    code = ErrorCode.payload_too_large


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
