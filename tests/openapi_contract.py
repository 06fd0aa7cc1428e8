"""Holds what the API serves to what ``docs/openapi.json`` says it serves.

The test client (``ApiClient`` in ``tests/conftest.py``) checks every response it receives:
its route and method must be in the document, its status must be one the document lists
for that operation, and its JSON body must match that status's schema. Any mismatch fails
the test that made the request, so the document cannot drift from the code.

Validators are compiled once per (operation, status) and reused for the whole session."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"

UNROUTED_STATUSES = frozenset({401, 404})
"""What a request matching no documented route may get: refused before routing for want of
an API key, or Lago's 404 ``route_not_found``."""


class ResponseContract:
    """The responses an OpenAPI document promises, operation by operation."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document
        self._components = document.get("components", {})
        # Literal segments first, so ``/a/b`` is never taken for ``/a/{id}``.
        templates = sorted(document["paths"], key=lambda path: (path.count("{"), path))
        self._routes = [(re.compile(_pattern(template)), template) for template in templates]
        self._validators: dict[tuple[str, str, str], Draft202012Validator] = {}
        self._error_schema = self._validator({"$ref": "#/components/schemas/ErrorBody"})

    def route(self, method: str, path: str) -> str | None:
        """The document's path template serving ``method path``, or None."""
        for pattern, template in self._routes:
            if pattern.fullmatch(path) and method.lower() in self._document["paths"][template]:
                return template
        return None

    def problems(self, method: str, url: str, status: int, body: Any) -> list[str]:
        """Why this response is not one the document describes (empty when it is)."""
        path = urlsplit(url).path
        template = self.route(method, path)
        if template is None:
            if status not in UNROUTED_STATUSES:
                return [f"{method} {path}: no such route in the document, yet it answered {status}"]
            return self._mismatches(self._error_schema, body, f"{method} {path} {status}")
        operation = self._document["paths"][template][method.lower()]
        response = operation["responses"].get(str(status))
        where = f"{method} {template} {status}"
        if response is None:
            return [
                f"{where}: status not in the document (it lists {sorted(operation['responses'])})"
            ]
        content = response.get("content", {})
        if "application/json" not in content:
            return []
        key = (template, method.lower(), str(status))
        if key not in self._validators:
            self._validators[key] = self._validator(content["application/json"]["schema"])
        return self._mismatches(self._validators[key], body, where)

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        rooted = {**schema, "components": self._components}
        return Draft202012Validator(rooted, format_checker=FormatChecker())

    @staticmethod
    def _mismatches(validator: Draft202012Validator, body: Any, where: str) -> list[str]:
        return [
            f"{where}: {'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in validator.iter_errors(body)
        ]


def _pattern(template: str) -> str:
    parts = re.split(r"(\{[^}]+\})", template)
    return "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)


@cache
def served_contract() -> ResponseContract:
    """The committed document's contract, read once per session."""
    return ResponseContract(json.loads(DOCUMENT.read_text()))


def check_response(method: str, url: str, status: int, body: Any) -> None:
    problems = served_contract().problems(method, url, status, body)
    if problems:
        listed = "\n  ".join(problems[:10])
        raise AssertionError(
            f"response differs from docs/openapi.json (run `make openapi` if the code is right):"
            f"\n  {listed}"
        )
