"""The runtime dependencies layer, built with pip for the Lambda platform instead of Docker.

``pip install --platform ... --only-binary=:all:`` downloads the manylinux aarch64 wheels
that match the functions' runtime, so ``cdk synth`` needs neither Docker nor a build
image. When CDK skips bundling (context ``aws:cdk:bundling-stacks`` = ``[]``), pip never
runs and the asset hash below stands in for the bundled output.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

PYTHON_VERSION = "3.12"
PIP_PLATFORM_ARGS = (
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    PYTHON_VERSION,
    "--only-binary=:all:",
)
"""Wheels for Lambda's ARM_64 Python runtime, whatever machine runs the synth."""

PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer")
"""Shipped by the Lambda Python runtime; aws-xray-sdk still pulls botocore in, so we drop it."""

FORBIDDEN = ("aiohttp",)
"""Dev-only packages that must never reach a bundle (``stripe`` imports aiohttp if present)."""


def _dist_name(folder: Path) -> str:
    """The normalized project name of a ``*.dist-info`` folder (``Foo_Bar-1.0`` -> ``foo-bar``)."""
    return folder.name.split("-", 1)[0].lower().replace("_", "-")


def prune(site: Path) -> None:
    """Remove what the runtime provides or must not ship, and fail on forbidden packages."""
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    shutil.rmtree(site / "bin", ignore_errors=True)
    for name in PROVIDED_BY_RUNTIME:
        shutil.rmtree(site / name, ignore_errors=True)
    for dist_info in site.glob("*.dist-info"):
        if _dist_name(dist_info) in PROVIDED_BY_RUNTIME:
            shutil.rmtree(dist_info)
    found = [name for name in FORBIDDEN if (site / name).exists()]
    if found:
        raise RuntimeError(f"dev-only packages in the dependencies layer: {', '.join(found)}")


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """Local bundler: pip-installs requirements.txt into ``<output>/python`` for the layer."""

    def __init__(self, requirements: Path) -> None:
        self._requirements = requirements

    def try_bundle(self, output_dir: str, *_options: object, **_kwargs: object) -> bool:
        """Always bundles locally (the bundling options are fixed here), so Docker is never used."""
        site = Path(output_dir) / "python"
        subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--requirement",
                str(self._requirements),
                *PIP_PLATFORM_ARGS,
                "--target",
                str(site),
            ],
            check=True,
        )
        prune(site)
        return True


def asset_hash(requirements: Path) -> str:
    """Hash of everything that shapes the layer, so the bundle is rebuilt exactly when it changes.

    A custom hash also keeps CDK from fingerprinting the whole project folder (the asset's
    source) and lets a synth reuse the bundle already in ``cdk.out``.
    """
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(Path(__file__).read_bytes())  # pip arguments and pruning rules live here
    return digest.hexdigest()


def dependencies_code(project_root: Path) -> lambda_.Code:
    """Layer code for the packages in ``requirements.txt``."""
    requirements = project_root / "requirements.txt"
    return lambda_.Code.from_asset(
        str(project_root),
        asset_hash=asset_hash(requirements),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=DockerImage.from_registry(f"python:{PYTHON_VERSION}"),
            local=PipLayerBundling(requirements),
        ),
    )
