"""AWS clients, one per service and process; endpoints come from botocore's own settings.

``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``) point them at the local stack, so
production code has no switch of its own.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from services.common.settings import get_settings

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, signature_version="v4")


@cache
def client(service: str) -> Any:
    return boto3.client(service, region_name=get_settings().region, config=_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (tests change endpoints and regions between cases)."""
    client.cache_clear()
