"""SDK clients on a fake upstream, for tests that need one built differently from the fixtures'."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from router.testing import FakeUpstream

# One boto3 session: it loads the service models once for every client the tests create.
_AWS = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")


def bedrock_client(
    upstream: FakeUpstream, service: str = "bedrock-runtime", read_timeout: float = 2.0
) -> Any:
    """A boto3 client of `service` on the fake upstream: dummy credentials, retries off."""
    config = Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout, connect_timeout=1.0)
    return _AWS.client(service, endpoint_url=upstream.bedrock_url, config=config)
