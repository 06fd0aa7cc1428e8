"""Billow's admin command line (stdlib, plus boto3 for a deployed stack).

    python admin.py create-organization --name NAME [--api-key KEY] [--local URL]
    python admin.py create-organization --name NAME [--api-key KEY] --table TABLE [--region R]
    python admin.py fire-schedule NAME --time ISO-8601 [--local URL]

``--local`` talks to a running ``make run`` through its ``/_local/`` admin endpoints;
``--table`` writes the organization straight into a deployed stack's table with your own
AWS credentials (organizations are not created through the public API on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_LOCAL_URL = "http://127.0.0.1:3000"
LAYER = Path(__file__).resolve().parent / "layers" / "billow" / "python"


class AdminError(RuntimeError):
    pass


def call_local(base_url: str, path: str, payload: dict[str, Any]) -> Any:
    if not base_url.startswith(("http://", "https://")):
        raise AdminError(f"--local must be an http(s) URL, got {base_url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{base_url.rstrip('/')}{path}",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AdminError(f"{error.code}: {error.read().decode(errors='replace')}") from error
    except urllib.error.URLError as error:
        raise AdminError(
            f"cannot reach {base_url} ({error.reason}); is `make run` running?"
        ) from error


def create_in_table(table: str, region: str | None, name: str, api_key: str | None) -> Any:
    """Create the organization with Billow's own service, against a deployed table."""
    os.environ["BILLOW_TABLE_NAME"] = table
    if region:
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"] = region
    sys.path.insert(0, str(LAYER))
    from billow.topology import TOPOLOGY  # noqa: PLC0415 - needs the layer on sys.path

    # Creating an organization touches the table only; the other settings just need values.
    os.environ.setdefault("BILLOW_EVENT_BUS_NAME", TOPOLOGY.bus_name)
    os.environ.setdefault("BILLOW_PUBLIC_API_URL", "")
    from billow.composition import dependencies  # noqa: PLC0415
    from billow.domain.errors import ValidationFailed  # noqa: PLC0415
    from billow.services.organizations import create_organization  # noqa: PLC0415

    try:
        created = create_organization(dependencies(), name=name, api_key=api_key)
    except ValidationFailed as refused:
        raise AdminError(f"refused: {json.dumps(refused.details)}") from refused
    return created.model_dump(include={"id", "name", "api_key", "hmac_key"})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="admin.py", description="Billow administration")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create-organization", help="create an organization (tenant)")
    create.add_argument("--name", required=True)
    create.add_argument("--api-key", help="use this API key instead of a generated one")
    target = create.add_mutually_exclusive_group()
    target.add_argument(
        "--local", metavar="URL", help=f"local Billow (default {DEFAULT_LOCAL_URL})"
    )
    target.add_argument("--table", help="a deployed stack's DynamoDB table name")
    create.add_argument("--region", help="AWS region of --table")

    fire = commands.add_parser("fire-schedule", help="fire a schedule in local Billow")
    fire.add_argument("name")
    fire.add_argument("--time", required=True, help="the scheduled time, ISO 8601")
    fire.add_argument("--local", metavar="URL", default=DEFAULT_LOCAL_URL)

    args = parser.parse_args(argv)
    if args.command == "create-organization" and args.region and not args.table:
        parser.error("--region goes with --table")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "fire-schedule":
            path = f"/_local/schedules/{quote(args.name, safe='')}/fire"
            result = call_local(args.local, path, {"time": args.time})
        elif args.table:
            result = create_in_table(args.table, args.region, args.name, args.api_key)
        else:
            payload = {"name": args.name}
            if args.api_key:
                payload["api_key"] = args.api_key
            result = call_local(args.local or DEFAULT_LOCAL_URL, "/_local/organizations", payload)
            result = result["organization"]
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
