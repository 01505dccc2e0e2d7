"""The API's documentation: /docs and /redoc pages, and an OpenAPI schema that says what the
routes really answer.

Pages: Swagger UI and ReDoc need JavaScript and CSS. When the `fastapi-offline` package is
installed (the dev extra: `lmrec serve`, `make demo`) they are served from its files, so the
pages work without internet; in Lambda, where the layer does not carry those 2.8 MB, they come
from FastAPI's default CDN, which any browser that reaches a deployed API can reach too.

Schema: every error is `{"detail": "..."}` (ErrorBody), 422 included: the app's handler
flattens FastAPI's list of validation errors into one line. Each route gets the error codes it
can answer with, and a request and a response example.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute

from lmrec.api.deps import NO_MODEL
from lmrec.api.schemas import ErrorBody

ASSETS_URL = "/docs-assets"
MODEL_VERSION = "20261130T053619Z-61d25d88-6201c6"


def _error(description: str, detail: str) -> dict[str, Any]:
    return {
        "model": ErrorBody,
        "description": description,
        "content": {"application/json": {"example": {"detail": detail}}},
    }


UNAUTHORIZED = _error(
    "LMREC_AUTH=jwt and no verified token (or it lacks the user claim)",
    "a verified token is required",
)
FORBIDDEN = _error(
    "LMREC_AUTH=jwt: the token's user is not the user asked about",
    "a caller may only act for their own user id",
)
TOO_LARGE = _error("the body is over LMREC_MAX_BODY_BYTES", "request body over 262144 bytes")
BAD_LENGTH = _error(
    "the Content-Length header is not a number of bytes, or not the body's length",
    "Content-Length says 5 bytes, the body has 19",
)
INVALID = _error(
    "a parameter or the body is invalid: every problem, on one line",
    "k: Input should be less than or equal to 100",
)
UNAVAILABLE = _error(
    "no model is loaded yet, or the user store is disabled or not answering", NO_MODEL
)


def error_responses(route: APIRoute) -> dict[int | str, dict[str, Any]]:
    """The error codes this route can answer with, each documented as ErrorBody."""
    params = route.dependant
    codes: dict[int | str, dict[str, Any]] = {}
    if route.body_field or params.path_params or params.query_params:
        codes[422] = INVALID
    if route.body_field:
        codes[413] = TOO_LARGE
        codes[400] = BAD_LENGTH
    if route.path.startswith("/v1/"):
        codes[401] = UNAUTHORIZED
        codes[503] = UNAVAILABLE
        if "user_id" in route.path or route.body_field:
            codes[403] = FORBIDDEN
    return codes


def _recommendation(item_id: str, title: str, genres: list[str], rank: int, score: float):
    return {
        "item_id": item_id,
        "score": score,
        "rank": rank,
        "attributes": {"title": title, "genres": genres, "release_year": 1977},
        "reason": {"item_id": "172", "title": "Empire Strikes Back, The (1980)"},
    }


ITEMS = [
    _recommendation("181", "Return of the Jedi (1983)", ["Action", "Sci-Fi"], 1, 9.12),
    _recommendation("50", "Star Wars (1977)", ["Action", "Sci-Fi"], 2, 8.87),
]
RECOMMENDATIONS = {
    "user_id": "42",
    "model_version": MODEL_VERSION,
    "strategy": "personalized",
    "items": ITEMS,
    "history_length": 50,
    "unknown_items": [],
    "warnings": [],
}
# (method, path) -> (request body example or None, status, response example)
EXAMPLES: dict[tuple[str, str], tuple[dict[str, Any] | None, int, Any]] = {
    ("post", "/v1/recommendations"): (
        {"user_id": "42", "history": ["50", "172"], "k": 2, "exclude_categories": ["Horror"]},
        200,
        RECOMMENDATIONS,
    ),
    ("post", "/v1/rankings"): (
        {"user_id": "42", "candidates": ["50", "181", "no-such-item"]},
        200,
        {
            **RECOMMENDATIONS,
            "items": [*ITEMS, {"item_id": "no-such-item", "score": None, "rank": 3}],
            "unknown_candidates": ["no-such-item"],
            "filtered_candidates": [],
            "warnings": [
                f"candidates not in the catalog of model {MODEL_VERSION}, ranked last (1): "
                "'no-such-item'"
            ],
        },
    ),
    ("get", "/v1/users/{user_id}/recommendations"): (None, 200, RECOMMENDATIONS),
    ("get", "/v1/items/{item_id}/similar"): (
        None,
        200,
        {"item_id": "172", "model_version": MODEL_VERSION, "items": ITEMS},
    ),
    ("post", "/v1/events"): (
        {"events": [{"user_id": "42", "item_id": "50", "timestamp": 1795800000}]},
        202,
        {"recorded": 1, "unknown_items": []},
    ),
    ("delete", "/v1/users/{user_id}/events"): (None, 200, {"user_id": "42", "deleted": 3}),
    ("get", "/v1/trending"): (
        None,
        200,
        {
            "model_version": MODEL_VERSION,
            "half_life_hours": 6.0,
            "items": [{**item, "reason": None} for item in ITEMS],
            "counted_at": "2026-11-30T05:40:02+00:00",
            "warnings": [],
            "degraded": False,
        },
    ),
    ("get", "/v1/model"): (
        None,
        200,
        {
            "model_version": MODEL_VERSION,
            "created_at": "2026-11-30T05:36:19+00:00",
            "data_fingerprint": "sha256:61d25d88...",
            "catalog_size": 1682,
            "users": 943,
            "item_table_dtype": "float32",
            "metrics": {"test_full": {"student": {"ndcg@10": 0.1173, "hr@10": 0.2153}}},
        },
    ),
    ("get", "/health"): (
        None,
        200,
        {
            "status": "ok",
            "model_version": MODEL_VERSION,
            "loaded_at": "2026-11-30T05:36:21+00:00",
            "checked_at": "2026-11-30T05:40:02+00:00",
            "reason": None,
        },
    ),
}
# Path and query parameters: the request examples of the GET and DELETE routes.
PARAMETER_EXAMPLES: dict[str, Any] = {
    "user_id": "42",
    "item_id": "172",
    "k": 2,
    "explain": True,
    "half_life_hours": 6.0,
    "include_categories": ["Sci-Fi"],
    "exclude_categories": ["Horror"],
    "exclude_items": ["50"],
}


def _add_examples(schema: dict[str, Any]) -> None:
    for (method, path), (request, status, response) in EXAMPLES.items():
        operation = schema["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        for parameter in operation.get("parameters", []):
            if parameter["name"] in PARAMETER_EXAMPLES:
                parameter["example"] = PARAMETER_EXAMPLES[parameter["name"]]
        if request is not None and "requestBody" in operation:
            operation["requestBody"]["content"]["application/json"]["example"] = request
        content = operation["responses"].get(str(status), {}).get("content", {})
        if "application/json" in content:
            content["application/json"]["example"] = response


def _assets() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    static = Path(spec.origin).parent / "static"
    return static if (static / "swagger-ui-bundle.js").exists() else None


def _add_pages(app: FastAPI) -> None:
    """/docs and /redoc, from local files when fastapi-offline is installed."""
    static = _assets()
    if static is not None:
        from fastapi.staticfiles import StaticFiles

        app.mount(ASSETS_URL, StaticFiles(directory=static), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        if static is None:  # FastAPI's defaults: the CDN
            return get_swagger_ui_html(openapi_url=openapi_url, title=title)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        if static is None:
            return get_redoc_html(openapi_url=openapi_url, title=title)
        return get_redoc_html(
            openapi_url=openapi_url, title=title, redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js"
        )


def document_errors(router: APIRouter) -> APIRouter:
    """Add each route's error responses; call before app.include_router, which builds the
    app's routes (and their response models) from these declarations."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            for code, doc in error_responses(route).items():
                route.responses.setdefault(code, doc)
            for code, doc in route.responses.items():  # errors declared by the route itself
                if str(code).startswith("4") and "model" not in doc:
                    doc["model"] = ErrorBody
    return router


def install(app: FastAPI) -> None:
    """Examples in the schema, and the /docs and /redoc pages (the app is made with
    docs_url=None and redoc_url=None)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _add_examples(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _add_pages(app)
