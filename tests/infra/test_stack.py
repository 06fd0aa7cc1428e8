"""The synthesized stack agrees with the topology declaration and grants least privilege.

Synthesized once per module with bundling skipped (context ``aws:cdk:bundling-stacks`` =
``[]``), so the dependencies layer is never pip-installed and the test runs offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from billow.settings import QUEUE_URL_PREFIX, TOPIC_ARN_PREFIX, env_name
from billow.topology import (
    NAMESPACE,
    PAYMENT_FAILURE,
    PAYMENT_UNMATCHED,
    RECONCILIATION_FAILURES,
    RECONCILIATION_REPAIRS,
    SERVICE,
    TOPOLOGY,
)
from stacks import BillowStack
from stacks.billow_stack import construct_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STAGE = "test"
SECRET_WRITE_ACTIONS = {
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:DeleteSecret",
}
TABLE_DATA_ACTIONS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"}


class Synth:
    """The stack, its template as a dict, and helpers to find resources by construct."""

    def __init__(self, outdir: Path) -> None:
        app = cdk.App(outdir=str(outdir), context={"aws:cdk:bundling-stacks": []})
        self.stack = BillowStack(app, "Billow", stage=STAGE, project_root=PROJECT_ROOT)
        self.template = assertions.Template.from_stack(self.stack)
        self.json: dict[str, Any] = self.template.to_json()
        self.resources: dict[str, dict[str, Any]] = self.json["Resources"]

    def logical_id(self, construct: Any) -> str:
        """Logical id of an L2 construct's CloudFormation resource."""
        return str(self.stack.resolve(construct.node.default_child.logical_id))

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value["Type"] == kind}

    def function_id(self, name: str) -> str:
        return self.logical_id(self.stack.functions[name])

    def role_statements(self, function: str) -> list[dict[str, Any]]:
        """Every statement of the inline policies attached to a function's role."""
        role = self.resources[self.function_id(function)]["Properties"]["Role"]["Fn::GetAtt"][0]
        return [
            statement
            for policy in self.of_type("AWS::IAM::Policy").values()
            if {"Ref": role} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]

    def actions(self, function: str) -> set[str]:
        return {
            action
            for statement in self.role_statements(function)
            for action in as_list(statement["Action"])
        }

    def resources_for(self, function: str, action: str) -> list[Any]:
        """Every resource the function's role allows ``action`` on."""
        return [
            resource
            for statement in self.role_statements(function)
            if statement["Effect"] == "Allow" and action in as_list(statement["Action"])
            for resource in as_list(statement["Resource"])
        ]

    def queue_id(self, name: str) -> str:
        return self.logical_id(self.stack.queues[name])

    def topic_id(self, name: str) -> str:
        return self.logical_id(self.stack.topics[name])

    def logical_id_of(self, kind: str, declared_name: str) -> str:
        """The resource of ``kind`` built for a declared name (its construct id)."""
        prefix = construct_name(declared_name)
        [found] = [key for key in self.of_type(kind) if key.startswith(prefix)]
        return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def arn_of(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def references(value: Any) -> Iterator[str]:
    """Logical ids a template fragment refers to (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner
            elif key == "Fn::GetAtt":
                yield inner[0] if isinstance(inner, list) else inner.split(".")[0]
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                for part in text.split("${")[1:]:
                    yield part.split("}")[0].split(".")[0]
                yield from references(inner)
            else:
                yield from references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return Synth(tmp_path_factory.mktemp("cdk.out"))


def test_every_declared_route_and_no_other(synth: Synth) -> None:
    routes = synth.of_type("AWS::ApiGatewayV2::Route").values()
    assert sorted(route["Properties"]["RouteKey"] for route in routes) == sorted(
        route.key for route in TOPOLOGY.routes
    )


def test_routes_reach_their_declared_function(synth: Synth) -> None:
    by_key = {
        route["Properties"]["RouteKey"]: route
        for route in synth.of_type("AWS::ApiGatewayV2::Route").values()
    }
    for declared in TOPOLOGY.routes:
        target = by_key[declared.key]["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        integration = synth.resources[target]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["PayloadFormatVersion"] == "2.0"
        assert integration["IntegrationUri"] == arn_of(synth.function_id(declared.function))


def test_api_gateway_may_invoke_each_routed_function(synth: Synth) -> None:
    permitted = {
        permission["Properties"]["FunctionName"]["Fn::GetAtt"][0]
        for permission in synth.of_type("AWS::Lambda::Permission").values()
        if permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert permitted == {synth.function_id(route.function) for route in TOPOLOGY.routes}


def test_one_function_per_declared_function(synth: Synth) -> None:
    functions = synth.of_type("AWS::Lambda::Function")
    assert len(functions) == len(TOPOLOGY.functions)
    layers = set(synth.of_type("AWS::Lambda::LayerVersion"))
    for declared in TOPOLOGY.functions:
        properties = functions[synth.function_id(declared.name)]["Properties"]
        assert properties["Handler"] == declared.handler
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["arm64"]
        assert properties["MemorySize"] == declared.memory_mb
        assert properties["Timeout"] == declared.timeout_s
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert {layer["Ref"] for layer in properties["Layers"]} == layers
        log_group = synth.resources[properties["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Properties"]["RetentionInDays"] == 30


def test_function_environment(synth: Synth) -> None:
    api_id = synth.logical_id(synth.stack.http_api)
    for declared in TOPOLOGY.functions:
        properties = synth.resources[synth.function_id(declared.name)]["Properties"]
        env = properties["Environment"]["Variables"]
        assert env["BILLOW_TABLE_NAME"] == {"Ref": synth.logical_id(synth.stack.table)}
        assert env["BILLOW_EVENT_BUS_NAME"] == {"Ref": synth.logical_id(synth.stack.bus)}
        assert env["BILLOW_SECRETS_PREFIX"] == f"billow/{STAGE}"
        assert env["BILLOW_PUBLIC_API_URL"] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}
        assert "BILLOW_STRIPE_API_BASE" not in env
        assert env["POWERTOOLS_SERVICE_NAME"] == "billow"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Billow"
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_functions_get_the_addresses_of_exactly_what_they_send_to(synth: Synth) -> None:
    """``BILLOW_QUEUE_URL_*`` / ``BILLOW_TOPIC_ARN_*`` (read by ``billow.settings``) for
    each declared ``sends_to`` queue and ``publishes_to`` topic, and none for the rest."""
    for declared in TOPOLOGY.functions:
        env = synth.resources[synth.function_id(declared.name)]["Properties"]["Environment"]
        variables: dict[str, Any] = env["Variables"]
        assert {k: v for k, v in variables.items() if k.startswith(QUEUE_URL_PREFIX)} == {
            env_name(QUEUE_URL_PREFIX, queue): {"Ref": synth.queue_id(queue)}
            for queue in declared.sends_to
        }, declared.name
        assert {k: v for k, v in variables.items() if k.startswith(TOPIC_ARN_PREFIX)} == {
            env_name(TOPIC_ARN_PREFIX, topic): {"Ref": synth.topic_id(topic)}
            for topic in declared.publishes_to
        }, declared.name
    assert TOPOLOGY.function("billing_run").sends_to == ("invoice-work",)
    assert TOPOLOGY.function("finance_alerts").publishes_to == ("finance-alerts",)


def test_functions_send_messages_only_to_the_queues_they_declare(synth: Synth) -> None:
    """``sqs:SendMessage`` (which also covers SendMessageBatch) on each ``sends_to`` queue;
    the only other queue a function may send to is its own stream-failure DLQ."""
    stream_consumers = {declared.function for declared in TOPOLOGY.stream_consumers}
    mappings = synth.of_type("AWS::Lambda::EventSourceMapping").values()
    for declared in TOPOLOGY.functions:
        expected = [arn_of(synth.queue_id(queue)) for queue in declared.sends_to]
        if declared.name in stream_consumers:
            expected += [
                m["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
                for m in mappings
                if m["Properties"]["FunctionName"] == {"Ref": synth.function_id(declared.name)}
                and "DestinationConfig" in m["Properties"]
            ]
        allowed = synth.resources_for(declared.name, "sqs:SendMessage")
        assert sorted(map(json.dumps, allowed)) == sorted(map(json.dumps, expected)), declared.name
        assert "sqs:SendMessageBatch" not in synth.actions(declared.name)


def test_one_encrypted_tls_only_topic_per_declared_topic(synth: Synth) -> None:
    """Topics use the AWS-managed SNS key, except those alarms notify: CloudWatch cannot use
    that key, so they get a rotated key of their own that CloudWatch may use only for this
    account's alarms, and only the alarm itself may publish to them."""
    topics = synth.of_type("AWS::SNS::Topic")
    assert set(topics) == {synth.topic_id(topic.name) for topic in TOPOLOGY.topics}
    assert {topic.name for topic in TOPOLOGY.topics} >= {"finance-alerts", "operations-alerts"}
    alarmed = {alarm.topic for alarm in TOPOLOGY.alarms}
    keys = synth.of_type("AWS::KMS::Key")
    policies = synth.of_type("AWS::SNS::TopicPolicy").values()
    for declared in TOPOLOGY.topics:
        topic_id = synth.topic_id(declared.name)
        key = topics[topic_id]["Properties"]["KmsMasterKeyId"]
        assert "Subscription" not in topics[topic_id]["Properties"]  # operators subscribe
        [policy] = [p for p in policies if p["Properties"]["Topics"] == [{"Ref": topic_id}]]
        statements = [
            {name: value for name, value in statement.items() if name != "Sid"}
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]
        assert {
            "Action": "sns:Publish",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": "*",
            "Resource": {"Ref": topic_id},
        } in statements
        allowed = [statement for statement in statements if statement["Effect"] == "Allow"]
        if declared.name not in alarmed:
            assert key["Fn::Join"][1][-1] == ":alias/aws/sns"  # the AWS-managed SNS key
            assert not allowed
            continue
        own_key = keys[key["Fn::GetAtt"][0]]["Properties"]
        assert own_key["EnableKeyRotation"] is True
        [grant] = [
            statement
            for statement in own_key["KeyPolicy"]["Statement"]
            if statement.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        ]
        assert sorted(grant["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
        assert set(grant["Condition"]) == {"StringEquals", "ArnLike"}
        [publish] = allowed
        assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        assert publish["Action"] == "sns:Publish"
        alarm_ids = {
            synth.logical_id_of("AWS::CloudWatch::Alarm", alarm.name)
            for alarm in TOPOLOGY.alarms
            if alarm.topic == declared.name
        }
        sources = publish["Condition"]["ArnLike"]["aws:SourceArn"]
        assert sorted(map(json.dumps, sources if isinstance(sources, list) else [sources])) == (
            sorted(json.dumps({"Fn::GetAtt": [alarm_id, "Arn"]}) for alarm_id in alarm_ids)
        )


def test_each_declared_alarm_watches_its_metric_and_notifies_its_topic(synth: Synth) -> None:
    alarms = synth.of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) == len(TOPOLOGY.alarms) >= 1
    for declared in TOPOLOGY.alarms:
        alarm = alarms[synth.logical_id_of("AWS::CloudWatch::Alarm", declared.name)]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"]) == (NAMESPACE, declared.metric)
        assert alarm["Dimensions"] == [{"Name": "service", "Value": SERVICE}]
        assert (alarm["Statistic"], alarm["Period"]) == ("Sum", declared.period_s)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert (alarm["Threshold"], alarm["EvaluationPeriods"]) == (declared.threshold, 1)
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": synth.topic_id(declared.topic)}]
    assert {alarm.metric for alarm in TOPOLOGY.alarms} == {
        RECONCILIATION_REPAIRS,
        RECONCILIATION_FAILURES,
    }


def test_only_declared_publishers_may_publish_to_a_topic(synth: Synth) -> None:
    for declared in TOPOLOGY.functions:
        assert sorted(map(json.dumps, synth.resources_for(declared.name, "sns:Publish"))) == (
            sorted(json.dumps({"Ref": synth.topic_id(t)}) for t in declared.publishes_to)
        ), declared.name
        sns_actions = {a for a in synth.actions(declared.name) if a.startswith("sns:")}
        assert sns_actions == ({"sns:Publish"} if declared.publishes_to else set())
    assert {f.name for f in TOPOLOGY.functions if f.publishes_to} == {"finance_alerts"}


def test_billing_queues_rules_and_schedules_exist(synth: Synth) -> None:
    """The billing run, invoice workers, payments, dunning and finance alerts: each
    consumer has its own queue and DLQ, and one payment failure reaches two of them."""
    consumers = {
        "invoice-work": "invoice_worker",
        "payments": "payments",
        "dunning": "dunning",
        "finance-alerts": "finance_alerts",
    }
    for queue, consumer in consumers.items():
        assert queue in synth.stack.queues and queue in synth.stack.dead_letter_queues
        assert TOPOLOGY.queue(queue).consumer == consumer
    rules = [rule["Properties"] for rule in synth.of_type("AWS::Events::Rule").values()]
    failure_targets = [
        rule["Targets"][0]["Arn"]
        for rule in rules
        if PAYMENT_FAILURE in rule["EventPattern"].get("detail-type", [])
    ]
    assert sorted(map(json.dumps, failure_targets)) == sorted(
        json.dumps(arn_of(synth.queue_id(queue))) for queue in ("dunning", "finance-alerts")
    )
    # Payments Billow will not apply go to the finance team only, never to dunning.
    unmatched_targets = [
        rule["Targets"][0]["Arn"]
        for rule in rules
        if PAYMENT_UNMATCHED in rule["EventPattern"].get("detail-type", [])
    ]
    assert unmatched_targets == [arn_of(synth.queue_id("finance-alerts"))]
    schedules = [s["Properties"] for s in synth.of_type("AWS::Scheduler::Schedule").values()]
    scheduled = {
        json.loads(s["Target"]["Input"])["schedule"]: s["Target"]["Arn"] for s in schedules
    }
    assert scheduled["billing-run"] == arn_of(synth.function_id("billing_run"))
    assert scheduled["dunning-run"] == arn_of(synth.function_id("dunning_run"))
    functions = synth.of_type("AWS::Lambda::Function")
    assert functions[synth.function_id("dunning_run")]["Properties"]["Handler"] == (
        "run.lambda_handler"
    )


def test_rules_alone_may_send_to_their_queues(synth: Synth) -> None:
    """EventBridge may send to a rule's queue only on behalf of that rule."""
    policies = synth.of_type("AWS::SQS::QueuePolicy").values()
    rules_by_queue: dict[str, list[Any]] = {}
    for key, rule in synth.of_type("AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            rules_by_queue.setdefault(target["Arn"]["Fn::GetAtt"][0], []).append(arn_of(key))
    for declared in TOPOLOGY.rules:
        queue_id = synth.queue_id(declared.queue)
        statements = [
            statement
            for policy in policies
            if {"Ref": queue_id} in policy["Properties"]["Queues"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Allow"
        ]
        assert statements, declared.name
        for statement in statements:
            assert statement["Principal"] == {"Service": "events.amazonaws.com"}
            source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
            assert source in rules_by_queue[queue_id], declared.name


def test_layers_target_the_function_platform(synth: Synth) -> None:
    layers = synth.of_type("AWS::Lambda::LayerVersion").values()
    assert len(layers) == 2
    for layer in layers:
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]


def test_one_queue_and_dlq_per_declared_queue(synth: Synth) -> None:
    mappings = synth.of_type("AWS::Lambda::EventSourceMapping").values()
    for declared in TOPOLOGY.queues:
        queue_id = synth.logical_id(synth.stack.queues[declared.name])
        dlq_id = synth.logical_id(synth.stack.dead_letter_queues[declared.name])
        queue = synth.resources[queue_id]["Properties"]
        dlq = synth.resources[dlq_id]["Properties"]
        assert queue["VisibilityTimeout"] == declared.visibility_timeout_s
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": arn_of(dlq_id),
            "maxReceiveCount": declared.max_receive_count,
        }
        assert queue["SqsManagedSseEnabled"] is True
        assert dlq["SqsManagedSseEnabled"] is True
        assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert declared.visibility_timeout_s >= TOPOLOGY.function(declared.consumer).timeout_s

        [mapping] = [
            m["Properties"]
            for m in mappings
            if m["Properties"]["EventSourceArn"] == arn_of(queue_id)
        ]
        assert mapping["FunctionName"] == {"Ref": synth.function_id(declared.consumer)}
        assert mapping["BatchSize"] == declared.batch_size
        assert mapping["MaximumBatchingWindowInSeconds"] == declared.max_batching_window_s
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        if declared.max_concurrency is None:
            assert "ScalingConfig" not in mapping
        else:
            assert mapping["ScalingConfig"] == {"MaximumConcurrency": declared.max_concurrency}


def test_rules_forward_declared_patterns_to_their_queue(synth: Synth) -> None:
    rules = [rule["Properties"] for rule in synth.of_type("AWS::Events::Rule").values()]
    assert len(rules) == len(TOPOLOGY.rules)
    bus = {"Ref": synth.logical_id(synth.stack.bus)}
    for declared in TOPOLOGY.rules:
        [rule] = [rule for rule in rules if rule["Description"] == declared.description]
        assert rule["EventBusName"] == bus
        assert rule["EventPattern"] == declared.event_pattern
        [target] = rule["Targets"]
        assert target["Arn"] == arn_of(synth.logical_id(synth.stack.queues[declared.queue]))
        assert "Arn" in target["DeadLetterConfig"]


def test_schedules_invoke_their_function_with_name_and_time(synth: Synth) -> None:
    schedules = [s["Properties"] for s in synth.of_type("AWS::Scheduler::Schedule").values()]
    assert len(schedules) == len(TOPOLOGY.schedules)
    for declared in TOPOLOGY.schedules:
        [schedule] = [s for s in schedules if s["Description"] == declared.description]
        assert schedule["ScheduleExpression"] == declared.expression
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
        target = schedule["Target"]
        assert target["Arn"] == arn_of(synth.function_id(declared.function))
        assert json.loads(target["Input"]) == {
            "schedule": declared.name,
            "time": "<aws.scheduler.scheduled-time>",
        }
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
        assert "Arn" in target["DeadLetterConfig"]
        role = synth.resources[target["RoleArn"]["Fn::GetAtt"][0]]
        [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}


def test_stream_consumers_with_filter_and_failure_destination(synth: Synth) -> None:
    table_id = synth.logical_id(synth.stack.table)
    mappings = [
        m["Properties"]
        for m in synth.of_type("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
    ]
    assert len(mappings) == len(TOPOLOGY.stream_consumers)
    for declared in TOPOLOGY.stream_consumers:
        [mapping] = [
            m
            for m in mappings
            if m["FunctionName"] == {"Ref": synth.function_id(declared.function)}
        ]
        [criterion] = mapping["FilterCriteria"]["Filters"]
        assert json.loads(criterion["Pattern"]) == declared.filter_pattern
        assert mapping["StartingPosition"] == "LATEST"
        assert mapping["BatchSize"] == declared.batch_size
        assert mapping["BisectBatchOnFunctionError"] is declared.bisect_on_error
        assert mapping["MaximumRetryAttempts"] == declared.max_retry_attempts
        assert mapping.get("MaximumBatchingWindowInSeconds", 0) == declared.max_batching_window_s
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        dlq = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        assert synth.resources[dlq]["Type"] == "AWS::SQS::Queue"


def test_table(synth: Synth) -> None:
    declared = TOPOLOGY.table
    table = synth.resources[synth.logical_id(synth.stack.table)]
    properties = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": declared.partition_key, "KeyType": "HASH"},
        {"AttributeName": declared.sort_key, "KeyType": "RANGE"},
    ]
    attributes = {
        a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]
    }
    assert attributes[declared.partition_key] == attributes[declared.sort_key] == "S"
    indexes = {index["IndexName"]: index for index in properties["GlobalSecondaryIndexes"]}
    assert set(indexes) == {index.name for index in declared.indexes}
    for index in declared.indexes:
        assert indexes[index.name]["KeySchema"] == [
            {"AttributeName": index.partition_key, "KeyType": "HASH"},
            {"AttributeName": index.sort_key, "KeyType": "RANGE"},
        ]
        assert indexes[index.name]["Projection"] == (
            {"ProjectionType": "ALL"}
            if index.projected is None
            else {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(index.projected)}
            if index.projected
            else {"ProjectionType": "KEYS_ONLY"}
        )
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": declared.ttl_attribute,
        "Enabled": True,
    }
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_bus_and_archive(synth: Synth) -> None:
    bus_id = synth.logical_id(synth.stack.bus)
    assert synth.resources[bus_id]["Properties"]["Name"] == f"{TOPOLOGY.bus_name}-{STAGE}"
    [archive] = synth.of_type("AWS::Events::Archive").values()
    assert archive["Properties"]["SourceArn"] == arn_of(bus_id)
    assert archive["Properties"]["EventPattern"] == {"source": ["billow"]}


def test_outputs(synth: Synth) -> None:
    outputs = synth.json["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::GetAtt": [synth.logical_id(synth.stack.http_api), "ApiEndpoint"]
    }
    assert outputs["TableName"]["Value"] == {"Ref": synth.logical_id(synth.stack.table)}
    assert outputs["EventBusName"]["Value"] == {"Ref": synth.logical_id(synth.stack.bus)}
    for declared in TOPOLOGY.topics:  # operators subscribe people to these ARNs
        output = outputs[f"{construct_name(declared.name)}TopicArn"]
        assert output["Value"] == {"Ref": synth.topic_id(declared.name)}
        assert declared.description in output["Description"]
    assert outputs["FinanceAlertsTopicArn"]


def test_no_circular_dependencies(synth: Synth) -> None:
    """CloudFormation rejects cycles; functions reference the API (its URL) and vice versa."""
    graph = {
        key: {
            ref
            for ref in [
                *references(resource.get("Properties", {})),
                *as_list(resource.get("DependsOn", [])),
            ]
            if ref in synth.resources
        }
        for key, resource in synth.resources.items()
    }
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"cycle: {' -> '.join((*path, node))}"
        if node not in done:
            for dependency in graph[node]:
                visit(dependency, (*path, node))
            done.add(node)

    for node in graph:
        visit(node, ())


def test_only_managers_write_secrets_and_only_stripe_callers_read_them(synth: Synth) -> None:
    assert {f.name for f in TOPOLOGY.functions if f.secrets == "manage"} == {"api"}
    for declared in TOPOLOGY.functions:
        assert (declared.secrets != "none") == (
            declared.calls_stripe or declared.name == "stripe_webhook"
        ), declared.name
        actions = synth.actions(declared.name)
        secret_actions = {action for action in actions if action.startswith("secretsmanager:")}
        if declared.secrets == "manage":
            assert secret_actions >= SECRET_WRITE_ACTIONS | {"secretsmanager:GetSecretValue"}
        elif declared.secrets == "read":
            assert secret_actions == {
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret",
            }
        else:
            assert not secret_actions, declared.name
        for statement in synth.role_statements(declared.name):
            if any(action.startswith("secretsmanager:") for action in as_list(statement["Action"])):
                arn = statement["Resource"]["Fn::Join"][1]
                assert arn[-1] == f":secret:billow/{STAGE}/*"


def test_only_the_publisher_puts_events(synth: Synth) -> None:
    publishers = {function.name for function in TOPOLOGY.functions if function.publishes_events}
    assert publishers == {"publisher"}
    assert publishers <= {consumer.function for consumer in TOPOLOGY.stream_consumers}
    for declared in TOPOLOGY.functions:
        assert ("events:PutEvents" in synth.actions(declared.name)) == (declared.name in publishers)


def test_publisher_reads_the_stream_but_not_the_table(synth: Synth) -> None:
    actions = synth.actions("publisher")
    assert not actions & TABLE_DATA_ACTIONS
    assert {
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:DescribeStream",
    } <= actions
    for declared in TOPOLOGY.functions:
        if declared.name != "publisher":
            assert synth.actions(declared.name) >= TABLE_DATA_ACTIONS, declared.name


def test_no_function_may_scan_the_table(synth: Synth) -> None:
    for declared in TOPOLOGY.functions:
        assert "dynamodb:Scan" not in synth.actions(declared.name), declared.name


def test_webhook_delivery_may_change_visibility_on_its_own_queue(synth: Synth) -> None:
    queue = arn_of(synth.logical_id(synth.stack.queues["webhook-delivery"]))
    assert any(
        "sqs:ChangeMessageVisibility" in as_list(statement["Action"])
        and statement["Resource"] == queue
        for statement in synth.role_statements("webhook_delivery")
    )


def test_wildcard_resources_only_where_aws_offers_nothing_narrower(synth: Synth) -> None:
    allowed = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}
    for declared in TOPOLOGY.functions:
        for statement in synth.role_statements(declared.name):
            if statement["Resource"] == "*":
                assert set(as_list(statement["Action"])) <= allowed, statement
            assert not any(action.endswith(":*") for action in as_list(statement["Action"]))
