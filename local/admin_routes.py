"""Local mode's admin endpoints (``/_local/…``), served by the local gateway."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from billow.api.json_nesting import nests_deeper_than
from billow.domain.errors import ValidationFailed
from local.api_gateway import HttpRequest, HttpResponse, gateway_error, json_response
from local.lambda_invocation import log_handler_failure
from local.resources import UnknownTopicError
from local.scheduling import ScheduleTimeOutOfRangeError, UnknownScheduleError, schedule_time

if TYPE_CHECKING:
    from local.runtime import LocalRuntime


_FIRE_PATH = re.compile(r"/_local/schedules/(?P<name>[^/]+)/fire")
_TOPIC_MESSAGES_PATH = re.compile(r"/_local/topics/(?P<name>[^/]+)/messages")


class AdminRoutes:
    """The local-only endpoints under ``/_local/``; never part of the deployed stack. They
    do what an operator does with the runtime: create organizations, fire schedules, read
    what reached a notification topic."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self._runtime = runtime

    def handle(self, request: HttpRequest) -> HttpResponse:
        path = urlsplit(request.target).path
        topic = _TOPIC_MESSAGES_PATH.fullmatch(path)
        if topic is not None:
            if request.method != "GET":
                return gateway_error(405, "Method Not Allowed", "method_not_allowed")
            return self._admin_topic_messages(unquote(topic["name"]))
        fire = _FIRE_PATH.fullmatch(path)
        if path != "/_local/organizations" and fire is None:
            return gateway_error(404, "Not Found", "not_found")
        if request.method != "POST":
            return gateway_error(405, "Method Not Allowed", "method_not_allowed")
        try:
            payload = None if nests_deeper_than(request.body) else json.loads(request.body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return gateway_error(
                400, "Bad Request", "bad_request", {"body": ["invalid_json_object"]}
            )
        if fire is not None:
            return self._admin_fire(unquote(fire["name"]), payload)
        return self._admin_create_organization(payload)

    def _admin_create_organization(self, payload: dict[str, Any]) -> HttpResponse:
        name, api_key = payload.get("name"), payload.get("api_key")
        details: dict[str, list[str]] = {}
        if not isinstance(name, str) or not name.strip():
            details["name"] = ["value_is_mandatory"]
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            details["api_key"] = ["invalid_value"]
        if details:
            return gateway_error(422, "Unprocessable Entity", "validation_errors", details)
        try:
            organization = self._runtime.create_organization(str(name), api_key)
        except ValidationFailed as refused:
            return gateway_error(422, "Unprocessable Entity", refused.code, refused.details)
        return json_response(
            200,
            {
                "organization": organization.model_dump(
                    include={"id", "name", "api_key", "hmac_key"}
                )
            },
        )

    def _admin_topic_messages(self, name: str) -> HttpResponse:
        try:
            messages = self._runtime.topic_messages(name)
        except UnknownTopicError:
            return gateway_error(404, "Not Found", "topic_not_found")
        return json_response(200, {"topic": name, "messages": messages})

    def _admin_fire(self, name: str, payload: dict[str, Any]) -> HttpResponse:
        raw_time = payload.get("time")
        try:
            moment = datetime.fromisoformat(raw_time) if isinstance(raw_time, str) else None
        except ValueError:
            moment = None
        if moment is None:
            return gateway_error(
                422, "Unprocessable Entity", "validation_errors", {"time": ["invalid_value"]}
            )
        try:
            result = self._runtime.fire_schedule(name, moment)
        except UnknownScheduleError:
            return gateway_error(404, "Not Found", "schedule_not_found")
        except ScheduleTimeOutOfRangeError:
            return gateway_error(
                422,
                "Unprocessable Entity",
                "validation_errors",
                {"time": ["value_is_out_of_range"]},
            )
        except Exception as exc:
            log_handler_failure(f"schedule {name}", f"a firing at {schedule_time(moment)}")
            return gateway_error(
                500, "Internal Server Error", "handler_error", {"exception": repr(exc)}
            )
        return json_response(
            200, {"schedule": name, "time": schedule_time(moment), "result": result}
        )
