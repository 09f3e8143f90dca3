"""A chaos run talks to loopback only: an audit hook refuses any other connection in the process.

The policy is pinned to the fake upstream, but a library under comparison may reach out on its
own (a cost map, telemetry, a tokenizer download); this makes that an error instead of traffic.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

__all__ = ["forbid_remote_connections"]

_installed = False
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def forbid_remote_connections() -> None:
    """From now on, this process may connect and resolve names on loopback (and Unix sockets) only."""
    global _installed
    if not _installed:
        sys.addaudithook(_refuse_remote)
        _installed = True


def _refuse_remote(event: str, args: tuple[Any, ...]) -> None:
    if event in ("socket.connect", "socket.sendto"):
        address = args[1]
        host = address[0] if isinstance(address, tuple) else None
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    if host is None or _is_loopback(host):
        return
    raise ConnectionRefusedError(f"chaos runs stay on loopback: refused a connection to {host!r}")


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host == "" or host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
