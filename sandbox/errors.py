"""Payrails' error envelope: ``{"errors": [{"id", "code", "title", "detail"}]}``."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web


class ApiError(Exception):
    """An error answer in Payrails' envelope."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {
            "errors": [
                {
                    "id": str(uuid.uuid4()),
                    "code": self.code,
                    "title": self.code,
                    "detail": self.detail,
                }
            ]
        }

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)


def not_found(what: str) -> ApiError:
    return ApiError(404, "resource.not-found", f"{what} not found")


def invalid(detail: str) -> ApiError:
    return ApiError(400, "request.validation-error", detail)


def not_allowed(detail: str) -> ApiError:
    return ApiError(400, "workflow.action.not-allowed", detail)


def conflict(detail: str) -> ApiError:
    return ApiError(409, "request.conflict", detail)
