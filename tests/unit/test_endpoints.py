"""The embedded AWS endpoint keeps DynamoDB's promise: one conditional write wins, however many race."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from smgt.local import endpoints


@pytest.fixture
def embedded() -> Iterator[str]:
    server = endpoints.start_moto_server(port=0)
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_concurrent_conditional_writes_on_the_embedded_endpoint_have_one_winner(embedded: str) -> None:
    db = boto3.client("dynamodb", endpoint_url=embedded, region_name="us-east-1")
    db.create_table(
        TableName="race",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def add_one(i: int) -> None:
        client = boto3.client("dynamodb", endpoint_url=embedded, region_name="us-east-1")
        barrier.wait()
        try:
            client.update_item(
                TableName="race",
                Key={"pk": {"S": "level"}},
                UpdateExpression="SET counted = :t ADD ended :one",
                ConditionExpression="attribute_not_exists(counted)",
                ExpressionAttributeValues={":t": {"BOOL": True}, ":one": {"N": "1"}},
            )
            outcomes.append("won")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=add_one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert outcomes.count("ConditionalCheckFailedException") == 15
    item = db.get_item(TableName="race", Key={"pk": {"S": "level"}})["Item"]
    assert item["ended"] == {"N": "1"}
