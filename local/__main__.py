"""``python -m local`` (``make run``): Billow on this machine until Ctrl-C.

Ports come from ``LOCAL_API_PORT`` (3000), ``LOCAL_STRIPE_PORT`` (12111) and
``LOCAL_AWS_PORT`` (5000); ``LOCAL_API_KEY`` fixes the seeded organization's API key.
The seeded organization is connected to the Stripe emulator through Billow's own API,
exactly as a user would do it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import string
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

LAYER = Path(__file__).resolve().parent.parent / "layers" / "billow" / "python"
if str(LAYER) not in sys.path:  # what Lambda's /opt/python is to the deployed functions
    sys.path.insert(0, str(LAYER))

from billow.topology import TOPOLOGY  # noqa: E402
from local.runtime import LocalRuntime, PortInUseError  # noqa: E402

SEED_ORGANIZATION = "Acme (local)"


class SetupError(RuntimeError):
    pass


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SetupError(f"{variable} must be a port number, got {raw!r}")
    return int(raw)


def _stripe_test_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "sk_test_" + "".join(secrets.choice(alphabet) for _ in range(24))


def connect_stripe(api_url: str, api_key: str) -> None:
    """Connect the organization to the emulator through Billow's own API, as a user would."""
    integration = {
        "code": "stripe",
        "name": "Stripe (emulator)",
        "secret_key": _stripe_test_key(),
        "create_customers": True,
    }
    request = urllib.request.Request(
        f"{api_url}/api/v1/integrations/stripe",
        data=json.dumps({"integration": integration}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    if status != 200:
        raise SetupError(
            f"connecting {SEED_ORGANIZATION} to the Stripe emulator failed: "
            f"POST /api/v1/integrations/stripe answered {status}: {body.decode(errors='replace')}"
        )


def banner(runtime: LocalRuntime, organization_id: str, api_key: str, hmac_key: str) -> str:
    api = f"{runtime.api_url}/api/v1"
    schedule = TOPOLOGY.schedules[0].name if TOPOLOGY.schedules else "NAME"
    topics = "".join(
        f"\n  curl -s {runtime.api_url}/_local/topics/{topic.name}/messages"
        for topic in TOPOLOGY.topics
    )
    topics_note = (
        "\nNotification topics (e-mail or chat in AWS) keep what was published to them;"
        "\nread it with the curl .../_local/topics/.../messages above."
        if TOPOLOGY.topics
        else ""
    )
    return f"""
Billow is running locally.

  API                 {api}
  API key             {api_key}
  Organization        {organization_id}  ({SEED_ORGANIZATION})
  Webhook HMAC key    {hmac_key}
  Stripe emulator     {runtime.stripe_url}
  AWS (moto)          {runtime.aws_url}

Try:
  curl -s -H "Authorization: Bearer {api_key}" {api}/customers
  .venv/bin/python admin.py create-organization --name "Another org" --local {runtime.api_url}
  .venv/bin/python admin.py fire-schedule {schedule} --time 2030-01-01T00:00:00Z \\
      --local {runtime.api_url}{topics}

Schedules never fire by themselves locally; fire them as above.{topics_note}
Ctrl-C stops everything.
"""


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for chatty in ("stripe", "botocore", "werkzeug"):  # one line per call drowns the banner
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        runtime = LocalRuntime(
            api_port=_port("LOCAL_API_PORT", 3000),
            stripe_port=_port("LOCAL_STRIPE_PORT", 12111),
            aws_port=_port("LOCAL_AWS_PORT", 5000),
        )
        runtime.start()
    except (PortInUseError, SetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        organization = runtime.create_organization(
            SEED_ORGANIZATION, api_key=os.environ.get("LOCAL_API_KEY") or None
        )
        connect_stripe(runtime.api_url, organization.api_key)
        print(banner(runtime, organization.id, organization.api_key, organization.hmac_key))
        stopping.wait()
        print("Stopping…", file=sys.stderr)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
