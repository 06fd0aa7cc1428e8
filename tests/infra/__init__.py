"""Tests of the CDK stack synthesized from the topology declaration."""
