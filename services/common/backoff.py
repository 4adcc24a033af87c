"""Backing off a queue message that must come back later (a launch waiting for quota or throttling).

A Lambda SQS event source leaves a failed record in the queue until its visibility timeout ends
(the queue's own, 360 s in the template). To wait longer after each attempt, the consumer sets the
record's visibility itself with ``ChangeMessageVisibility``; the delay grows with the record's
``ApproximateReceiveCount``.

Every receive counts toward the queue's ``maxReceiveCount``, after which SQS moves the message to
the dead-letter queue: the backoff spreads the attempts over time, the redrive policy bounds
their number. With base ``b``, cap ``c`` and ``maxReceiveCount`` ``n``, a message waits about
``b + 2b + 4b + ... (capped at c)`` over ``n`` receives before it is dead-lettered: with the
defaults (30 s, 900 s) and the template's ``maxReceiveCount: 5`` that is 30+60+120+240+480 s,
about 15 minutes, far less than a labeling job lasts. A launcher queue that must wait for quota
needs ``maxReceiveCount`` around 100 (about 24 hours of attempts at the 900 s cap); a message that
still ends in the DLQ leaves its jobs PENDING and is redriven once slots are free (the launch is
idempotent). Without ``sqs:ChangeMessageVisibility`` the backoff degrades to the queue's own
visibility timeout.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from services.common.clients import client
from services.common.observability import logger

SQS_MAX_VISIBILITY_SECONDS = 43200


def retry_delay_seconds(
    receive_count: int,
    base_seconds: int,
    max_seconds: int,
    jitter: float = 0.1,
    rand: Callable[[], float] = random.random,
) -> int:
    """Exponential backoff: ``base * 2**(receive_count - 1)``, capped, minus up to ``jitter`` of it.

    The jitter spreads the retries of messages deferred together (a full level hitting the cap),
    so they do not all come back in the same second.
    """
    attempt = max(1, receive_count)
    ceiling = min(max_seconds, SQS_MAX_VISIBILITY_SECONDS)
    delay = min(ceiling, base_seconds * 2 ** min(attempt - 1, 30))
    delay -= delay * jitter * rand()
    return max(1, min(ceiling, round(delay)))


def queue_url_from_arn(queue_arn: str) -> str:
    """``arn:aws:sqs:<region>:<account>:<name>`` -> the queue URL on the SQS endpoint in use."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    account, name = parts[4], parts[5]
    return f"{client('sqs').meta.endpoint_url.rstrip('/')}/{account}/{name}"


def postpone(queue_arn: str, receipt_handle: str, seconds: int) -> bool:
    """Make a received message visible again only after ``seconds``; False if SQS refused.

    Best effort: when the call fails (no ``sqs:ChangeMessageVisibility`` permission, a receipt
    handle that expired), the message still comes back after the queue's visibility timeout.
    """
    try:
        client("sqs").change_message_visibility(
            QueueUrl=queue_url_from_arn(queue_arn), ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )
    except (ClientError, BotoCoreError, ValueError) as error:
        logger.warning(
            "could not postpone the message; the queue's visibility timeout applies",
            extra={"error": str(error)},
        )
        return False
    return True
