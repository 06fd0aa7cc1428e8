"""CDK app: ``python app.py`` (or ``cdk synth``) writes Billow's cloud assembly to cdk.out.

``-c stage=<name>`` (CDK CLI) picks the stage, ``dev`` by default. Without
CDK_DEFAULT_ACCOUNT/REGION the stack is environment-agnostic, so synth needs no credentials.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "layers" / "billow" / "python"))

import aws_cdk as cdk  # noqa: E402

from stacks import BillowStack  # noqa: E402


def main() -> None:
    app = cdk.App(outdir=os.environ.get("CDK_OUTDIR", str(ROOT / "cdk.out")))
    stage = app.node.try_get_context("stage") or "dev"
    BillowStack(
        app,
        "Billow",
        stack_name=f"Billow-{stage}",
        stage=stage,
        project_root=ROOT,
        env=cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        ),
        description=f"Billow billing engine ({stage})",
    )
    app.synth()


if __name__ == "__main__":
    main()
