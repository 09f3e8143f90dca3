"""The wire protocols the fake upstream speaks, one module each, over the shared `Wire` interface."""

from router.testing.wires.anthropic import AnthropicWire
from router.testing.wires.base import Answer, BadRequest, Chat, Stream, Wire
from router.testing.wires.bedrock import BedrockWire
from router.testing.wires.google import GoogleWire
from router.testing.wires.openai import AzureWire, OpenAIWire

__all__ = [
    "Answer",
    "AnthropicWire",
    "AzureWire",
    "BadRequest",
    "BedrockWire",
    "Chat",
    "GoogleWire",
    "OpenAIWire",
    "Stream",
    "Wire",
]
