"""Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}` with the HTTP status.

OpenAI's clients read `error.message` (and raise BadRequestError, NotFoundError, RateLimitError...
by status), so every refusal of the gateway, its own 404/405 included, comes back in this shape.
"""
from __future__ import annotations

from starlette.responses import JSONResponse

# status -> the error type OpenAI uses for it (or the nearest in its spirit)
TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
    405: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
    429: "rate_limit_error", 500: "server_error", 503: "service_unavailable", 504: "timeout_error",
}


class APIError(Exception):
    """A refusal with its HTTP status; `extra` fields go into the error object (e.g. job_id)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code,
                          **self.extra}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)
