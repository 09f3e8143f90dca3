"""Clients of the real SDKs, pointed at the `fake_upstream` fixture: the new wires' tests share them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from router.testing import FakeUpstream
from tests.testing.clients import bedrock_client


@pytest.fixture
def bedrock(fake_upstream: FakeUpstream) -> Any:
    return bedrock_client(fake_upstream)


@pytest.fixture
async def claude(fake_upstream: FakeUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url=fake_upstream.anthropic_base_url, api_key="sk-ant-test", max_retries=0, timeout=2.0
    )
    yield client
    await client.close()


@pytest.fixture
async def azure(fake_upstream: FakeUpstream) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=fake_upstream.azure_endpoint,
        api_version="2024-10-21",
        api_key="azure-test",
        max_retries=0,
        timeout=2.0,
    )
    yield client
    await client.close()
