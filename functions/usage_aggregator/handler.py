"""Lambda entry point: folds new usage events from the table stream into aggregates."""

import base64
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow import tracing
from billow.adapters.table import unpacked
from billow.composition import dependencies
from billow.domain.usage import UsageEvent
from billow.services.usage.aggregation import FoldInterrupted, StreamedEvent, fold_stream_batch

logger = Logger(service="billow")


@logger.inject_lambda_context
@tracing.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Reports the first record not folded, so Lambda delivers again from exactly there
    (the stream mapping does not bisect: a retry must start where a chunk started)."""
    streamed: list[tuple[str, StreamedEvent]] = []
    for record in DynamoDBStreamEvent(event).records:
        change = record.dynamodb
        image = change.new_image if change else None
        if change is None or not image or image.get("kind") != "usage_event":
            continue
        # A binary attribute reaches a stream consumer base64-encoded, as JSON carries it.
        stored = UsageEvent.model_validate(unpacked(base64.b64decode(image["data"])))
        streamed.append((str(change.sequence_number), StreamedEvent(str(record.event_id), stored)))
    try:
        fold_stream_batch(dependencies(), [event for _, event in streamed])
    except FoldInterrupted as stopped:
        logger.exception("usage events not folded", extra={"from_record": stopped.position})
        return {"batchItemFailures": [{"itemIdentifier": streamed[stopped.position][0]}]}
    return {"batchItemFailures": []}
