"""The API's documentation: offline /docs and /redoc, and a schema that matches the answers."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from lmrec.api import create_app
from lmrec.api.schemas import ErrorBody
from lmrec.serving import ModelState
from lmrec.settings import Settings
from pydantic import TypeAdapter


@pytest.fixture
def app(tmp_path):
    settings = Settings(store_uri=f"file://{tmp_path}", max_body_bytes=2048)
    return create_app(settings, ModelState(settings))  # an empty store: no model


@pytest.fixture
def client(app):
    return TestClient(app)


def test_docs_pages_load_their_assets_from_this_server_not_a_cdn(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html.text)
        assert assets, page
        for url in assets:
            assert url.startswith("/docs-assets/"), url
            served = client.get(url)
            assert served.status_code == 200 and len(served.content) > 10_000, url


def test_every_route_has_request_and_response_examples_true_to_its_models(app, client):
    schema = client.get("/openapi.json").json()
    routes = {
        (method.lower(), re.sub(r":\w+}", "}", r.path)): r
        for r in app.routes
        if isinstance(r, APIRoute) and r.include_in_schema
        for method in r.methods
    }
    for (method, path), route in routes.items():
        operation = schema["paths"][path][method]
        if "requestBody" in operation:
            example = operation["requestBody"]["content"]["application/json"]["example"]
            TypeAdapter(route.body_field.field_info.annotation).validate_python(example)
        else:
            assert operation.get("parameters"), (method, path)
            assert all("example" in p for p in operation["parameters"]), (method, path)
        status = str(route.status_code or 200)
        example = operation["responses"][status]["content"]["application/json"]["example"]
        TypeAdapter(route.response_model).validate_python(example)


def test_every_error_is_documented_as_the_detail_body(client):
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    documented = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/health":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (method, path, status)
                    documented.add(status)
    assert {"400", "401", "403", "404", "413", "422", "503"} <= documented


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/v1/recommendations", {"json": {"user_id": "1", "k": 500}}, 422),
        ("get", "/v1/users/1/recommendations?k=0", {}, 422),
        ("post", "/v1/recommendations", {"content": b"{" + b" " * 4096 + b"}"}, 413),
        ("post", "/v1/recommendations", {"content": b'{"user_id": "\xff"}'}, 422),
        ("post", "/v1/recommendations", {"content": b"[" * 1020 + b"]" * 1020}, 422),
        ("get", "/v1/users/%ff/recommendations", {}, 422),
        ("post", "/v1/events", {"content": b"{}", "headers": {"content-length": "x"}}, 400),
        ("post", "/v1/recommendations", {"json": {"user_id": "1"}}, 503),
        ("get", "/v1/model", {}, 503),
        ("post", "/v1/rankings", {"json": {"user_id": "1", "candidates": []}}, 422),
        ("post", "/v1/rankings", {"json": {"user_id": "1", "candidates": ["1"] * 501}}, 422),
        ("post", "/v1/rankings", {"json": {"user_id": "1", "candidates": ["1", "1"]}}, 422),
        ("post", "/v1/rankings", {"json": {"user_id": "1", "candidates": ["1"]}}, 503),
    ],
)
def test_the_real_error_bodies_are_what_the_schema_says(client, method, path, kwargs, status):
    reply = getattr(client, method)(path, **kwargs)
    assert reply.status_code == status
    body = reply.json()
    assert set(body) == {"detail"}
    ErrorBody.model_validate(body)
    assert isinstance(body["detail"], str) and body["detail"]


def test_rankings_documents_its_limits_and_every_error(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/rankings"]["post"]
    assert {"401", "403", "413", "422", "503"} <= set(operation["responses"])
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RankingRequest"]
    candidates = schema["properties"]["candidates"]
    assert candidates["minItems"] == 1 and candidates["maxItems"] == 500
    assert "candidates" in schema["required"]
