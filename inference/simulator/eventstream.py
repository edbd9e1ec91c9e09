"""AWS event-stream framing (the binary format of Bedrock's invoke-with-response-stream), for the simulator."""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

_STRING = 7


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", _STRING, len(raw_value)) + raw_value


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message: prelude (total and header lengths), its CRC32, headers, payload, message CRC32."""
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    head = prelude + struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF) + encoded + payload
    return head + struct.pack("!I", binascii.crc32(head) & 0xFFFFFFFF)


def chunk_event(event: dict[str, Any]) -> bytes:
    """A Bedrock `chunk` event wrapping one Anthropic stream event, base64 in `bytes` as AWS sends it."""
    body = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
    return frame({":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, body)


def exception_event(exception_type: str, message: str) -> bytes:
    """A mid-stream Bedrock exception, e.g. `throttlingException` or `internalServerException`."""
    body = json.dumps({"message": message}).encode()
    return frame({":exception-type": exception_type, ":content-type": "application/json",
                  ":message-type": "exception"}, body)
