"""The handlers serve exactly the routes the topology declares, and the published OpenAPI
document is the one the code generates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from billow.api import stripe_webhook
from billow.api.app import openapi_document
from billow.topology import TOPOLOGY

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "delete", "patch"}


def served(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in METHODS
    }


def declared(function: str) -> set[tuple[str, str]]:
    return {
        (route.method, route.path)
        for route in TOPOLOGY.routes
        if route.function == function and route.path != "$default"
    }


def test_api_handler_serves_exactly_the_declared_routes() -> None:
    assert served(json.loads(openapi_document())) == declared("api")


def test_stripe_intake_serves_exactly_the_declared_route() -> None:
    schema = stripe_webhook.app.get_openapi_json_schema(title="intake", version="0")
    assert served(json.loads(schema)) == declared("stripe_webhook")


def test_published_openapi_document_is_current() -> None:
    """``make openapi`` writes docs/openapi.json; a stale copy fails here."""
    published = (ROOT / "docs" / "openapi.json").read_text()
    assert json.loads(published) == json.loads(openapi_document()), "run `make openapi`"


def test_every_json_success_body_has_a_closed_schema() -> None:
    """Each 2xx JSON body is a named model that lists its fields and allows no others."""
    document = json.loads(openapi_document())
    schemas = document["components"]["schemas"]
    open_bodies = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                body = response.get("content", {}).get("application/json")
                if not status.startswith("2") or body is None:
                    continue
                name = body["schema"].get("$ref", "").rsplit("/", 1)[-1]
                if schemas.get(name, {}).get("additionalProperties") is not False:
                    open_bodies.append(f"{method.upper()} {path} {status}")
    assert open_bodies == []


DOCUMENT_AFTER_REQUESTS = """
from billow.api import app, routes

app.include_routes(reversed(routes.MODULES))
print(app.openapi_document())
"""


def test_openapi_document_is_the_same_whatever_order_requests_loaded_the_routes() -> None:
    """The API registers route modules as requests first need them, in any order: the
    document ``make openapi`` writes must still come out byte for byte the same."""
    result = subprocess.run(
        [sys.executable, "-c", DOCUMENT_AFTER_REQUESTS],
        env={"PYTHONPATH": str(ROOT / "layers" / "billow" / "python"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == (ROOT / "docs" / "openapi.json").read_text()
