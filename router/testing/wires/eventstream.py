"""An encoder for AWS event-stream frames (`application/vnd.amazon.eventstream`), as Bedrock streams use.

A frame is a prelude (total length, headers length, both big-endian uint32, then the CRC32 of
those 8 bytes), the headers (name length uint8, name, value type 7 = string, value length
uint16, value), the payload, and the CRC32 of everything before it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

__all__ = ["encode_frame"]

_STRING = 7


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One frame with string `headers` and `payload`."""
    header_bytes = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(header_bytes))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + header_bytes + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode(), value.encode()
    return (
        struct.pack(">B", len(name_bytes))
        + name_bytes
        + struct.pack(">BH", _STRING, len(value_bytes))
        + value_bytes
    )
