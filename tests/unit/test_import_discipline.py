"""Cold start: what each Lambda handler loads when its module is imported."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from billow.api import routes
from billow.topology import TOPOLOGY, Function
from tests.conftest import Org
from tests.unit.test_openapi_contract import EMPTY_PAGE

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, json, sys
module, attribute = sys.argv[1].rsplit(".", 1)
getattr(importlib.import_module(module), attribute)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda function: function.name)
def test_handler_imports_never_load_stripe_xray_or_dev_packages(function: Function) -> None:
    """``stripe`` is loaded lazily, by the first Stripe call, and only where one happens;
    the X-Ray SDK only by the first traced call (``billow.tracing``), even in Lambda."""
    layer = ROOT / "layers" / "billow" / "python"
    environment = {
        "PYTHONPATH": f"{ROOT / 'functions' / function.code}:{layer}",
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"billow-{function.code}",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, function.handler],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert "stripe" not in loaded
    assert "aws_xray_sdk" not in loaded
    assert "moto" not in loaded and "localstripe" not in loaded and "aiohttp" not in loaded


def test_only_stripe_calling_functions_reach_the_stripe_adapter() -> None:
    """The adapter is imported only from the composition root, which only those use."""
    importers = [
        path.relative_to(ROOT)
        for path in (ROOT / "layers" / "billow" / "python" / "billow").rglob("*.py")
        if "stripe_gateway import" in path.read_text()
    ]
    assert importers == [Path("layers/billow/python/billow/composition.py")]


def _rules(module_name: str) -> list[str]:
    """The path rules of one route module's routes, as its ``Router`` registered them."""
    router = importlib.import_module(f"billow.api.routes.{module_name}").router
    return [key[0] for key in router._routes]


def test_route_index_names_every_route_module_and_reaches_every_route() -> None:
    """The API imports a route module only when the index names it for a request's path:
    a module missing from it, or a route filed under another module's segment, would
    answer 404 however valid the request."""
    on_disk = {module.name for module in pkgutil.iter_modules(routes.__path__)}
    assert set(routes.MODULES) == on_disk
    assert len(routes.MODULES) == len(on_disk)
    assert set(routes.BY_RESOURCE.values()) | set(routes.BY_NESTED_COLLECTION.values()) == on_disk
    # What a parameter could hold that the index tells apart from an ordinary id.
    segment_names = {"an-id", *routes.BY_RESOURCE}
    segment_names |= {collection for _, collection in routes.BY_NESTED_COLLECTION}
    unreachable = []
    for module_name in routes.MODULES:
        rules = _rules(module_name)
        assert rules, module_name
        for rule in rules:
            paths = [re.sub(r"<\w+>", value, rule) for value in sorted(segment_names)]
            if {routes.module_for(path) for path in paths} != {module_name}:
                unreachable.append((module_name, rule))
    assert unreachable == []


def test_route_index_names_nothing_no_route_serves() -> None:
    """Each entry of the index is some route's way in, so the index stays exact."""
    resources = {}
    collections = {}
    for module_name in routes.MODULES:
        for rule in _rules(module_name):
            segments = rule.removeprefix(routes.API_PREFIX).split("/")
            nested = (segments[0], segments[2]) if len(segments) > 2 else None
            if nested in routes.BY_NESTED_COLLECTION:
                collections[nested] = module_name
            else:
                resources[segments[0]] = module_name
    assert resources == routes.BY_RESOURCE
    assert collections == routes.BY_NESTED_COLLECTION


API_REQUESTS = """
import json, sys
from types import SimpleNamespace

def billow_modules(prefix):
    return sorted(name for name in sys.modules if name.startswith(prefix))

import handler

loaded = {"at import": billow_modules("billow.api.routes.")}
loaded["services at import"] = billow_modules("billow.services.")
context = SimpleNamespace(
    function_name="billow-api",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:billow-api",
    aws_request_id="cold-start-probe",
)
answers = []
for path in sys.argv[2:]:
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"authorization": "Bearer " + sys.argv[1]},
        "requestContext": {
            "http": {"method": "GET", "path": path, "sourceIp": "127.0.0.1"},
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    response = handler.lambda_handler(event, context)
    answers.append([response["statusCode"], json.loads(response["body"])])
    loaded[path] = billow_modules("billow.api.routes.")
print(json.dumps({"loaded": loaded, "answers": answers}))
"""


def test_api_handler_loads_only_the_route_modules_its_requests_need(org: Org) -> None:
    """Importing the API handler loads no route module and no service but the API key
    lookup; a request loads its own module (and its services) and no other; a path no
    route serves loads nothing and still gets Lago's 404."""
    layer = ROOT / "layers" / "billow" / "python"
    environment = {
        key: value for key, value in os.environ.items() if key != "AWS_LAMBDA_FUNCTION_NAME"
    }
    environment["PYTHONPATH"] = f"{ROOT / 'functions' / 'api'}:{layer}"
    result = subprocess.run(
        [sys.executable, "-c", API_REQUESTS, org.api_key, "/api/v1/customers", "/api/v1/nothing"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["loaded"] == {
        "at import": [],
        "services at import": ["billow.services.api_keys"],
        "/api/v1/customers": ["billow.api.routes.customers"],
        "/api/v1/nothing": ["billow.api.routes.customers"],
    }
    assert report["answers"] == [
        [200, EMPTY_PAGE],
        [404, {"status": 404, "error": "Not Found", "code": "route_not_found"}],
    ]
