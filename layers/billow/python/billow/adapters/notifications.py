"""Publishing to notification topics (SNS) that people subscribe to.

Topics are known by their declared name (``billow.topology.Topic``); the ARN comes from
``BILLOW_TOPIC_ARN_<NAME>``, which the stack sets only on functions that declare the
topic in ``publishes_to`` (and ``sns:Publish`` is granted only to them).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import boto3

from billow.settings import TOPIC_ARN_PREFIX, env_name

MAX_SUBJECT_CHARS = 100
"""SNS refuses longer subjects (they become the e-mail subject line)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class UnknownTopicError(LookupError):
    """The function has no ARN for a topic: it is missing from its ``publishes_to``."""


def subject_line(text: str) -> str:
    """``text`` as SNS accepts a subject: one line, no control characters, ≤100 chars."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    if len(line) > MAX_SUBJECT_CHARS:
        line = line[: MAX_SUBJECT_CHARS - 3].rstrip() + "..."
    return line or "(no subject)"


class Notifications:
    def __init__(self, topic_arns: Mapping[str, str]) -> None:
        self._topic_arns = dict(topic_arns)

    @functools.cached_property
    def client(self) -> Any:
        """Built on first use: importing or composing costs no client."""
        return boto3.client("sns")

    def topic_arn(self, topic_name: str) -> str:
        try:
            return self._topic_arns[topic_name]
        except KeyError:
            raise UnknownTopicError(
                f"no {env_name(TOPIC_ARN_PREFIX, topic_name)} in this function's environment;"
                f" declare {topic_name!r} in its publishes_to"
            ) from None

    def publish(self, topic_name: str, subject: str, message: str) -> str:
        """Publish a plain-text message to every subscriber; returns SNS's message id.

        The topics are standard (not FIFO) topics, which have no de-duplication: callers
        that may run twice for the same fact make the call idempotent themselves.
        """
        response = self.client.publish(
            TopicArn=self.topic_arn(topic_name), Subject=subject_line(subject), Message=message
        )
        return str(response["MessageId"])
