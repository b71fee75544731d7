"""The OpenAPI document says what the API really answers: every error as problem+json
with the statuses each route can give, CSV and NEM12 where they come back.

FastAPI documents only the 200 and its own 422 (as application/json, though every error
here is RFC 9457 problem+json); a client generated from that document, or schemathesis,
then meets statuses and media types it was never told about. Rather than repeat the
same five responses on every route, the generated document is completed once here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from collector.api.problems import MEDIA

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "where": {"type": "string"}, "problem": {"type": "string"}}}},
    },
}
WHY = {
    "400": "The body is not JSON",
    "401": "No token, or one unknown, revoked or of an ended session",
    "403": "The token lacks a scope this needs, or a cookie-authorized write came from "
           "another site",
    "404": "Nothing by that id",
    "409": "The state forbids it (only a held bill is released, an open flag acted on)",
    "422": "A parameter or the body is not valid",
    "500": "The server failed and logged why",
}


def _problem(status: str) -> dict[str, Any]:
    return {"description": WHY[status],
            "content": {MEDIA: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM
    schemas = doc["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            statuses = ["500"]
            if path.startswith("/v1"):
                statuses += ["401", "403", "422"]
            if "{" in path:
                statuses.append("404")
            if method == "post" and path.endswith(("/release", "/actions")):
                statuses.append("409")
            if "requestBody" in op:
                statuses.append("400")
            if method == "post" or op.get("parameters"):
                statuses.append("422")
            for status in dict.fromkeys(statuses):
                responses[status] = _problem(status)
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
