"""SSH signal: established TCP connections to the SSH port, from ``/proc/net/tcp{,6}``.

Counting connections rather than terminals catches what ``who`` misses: port
forwards, VS Code remote sessions, and the SSM / IAP tunnels that reach the box
as connections to port 22 from localhost or from Google's IAP range.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from typing import Any

TCP_ESTABLISHED = "01"
# Google Cloud IAP TCP forwarding connects from this range.
IAP_RANGE = ipaddress.ip_network("35.235.240.0/20")


def _ipv4(hex_word: str) -> str:
    # The kernel prints the address as one 32-bit word in host byte order.
    order = "<I" if sys.byteorder == "little" else ">I"
    return socket.inet_ntop(socket.AF_INET, struct.pack(">I", struct.unpack(order, bytes.fromhex(hex_word))[0]))


def _ipv6(hex_text: str) -> str:
    # Four 32-bit words, each in host byte order.
    raw = bytes.fromhex(hex_text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(raw)
    return str(address.ipv4_mapped or address)


def _endpoint(field: str) -> dict[str, Any]:
    host, port = field.split(":")
    address = _ipv4(host) if len(host) == 8 else _ipv6(host)
    return {"address": address, "port": int(port, 16)}


def parse_proc_net_tcp(text: str) -> list[dict[str, Any]]:
    """All sockets in a ``/proc/net/tcp`` or ``/proc/net/tcp6`` table.

    Each entry has ``local`` and ``remote`` endpoints and the hex ``state``.
    Raises ``ValueError`` on a row that is not in the kernel's format.
    """
    sockets = []
    for number, line in enumerate(text.splitlines()):
        fields = line.split()
        if not fields or (number == 0 and fields[0] == "sl"):
            continue
        if len(fields) < 4 or not fields[0].endswith(":"):
            raise ValueError(f"line {number + 1}: not a /proc/net/tcp row: {line[:120]!r}")
        try:
            sockets.append({"local": _endpoint(fields[1]), "remote": _endpoint(fields[2]), "state": fields[3]})
        except (ValueError, struct.error) as error:
            raise ValueError(f"line {number + 1}: bad address ({error}): {line[:120]!r}") from error
    return sockets


def classify_peer(address: str) -> str:
    """Where a connection comes from, for the status report: loopback, iap or remote."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return "loopback"
    if ip.version == 4 and ip in IAP_RANGE:
        return "iap"
    return "remote"


def ssh_connections(tables: list[str], port: int) -> list[dict[str, Any]]:
    """Established connections whose local end is the SSH port, from several tables."""
    found = []
    for text in tables:
        for entry in parse_proc_net_tcp(text):
            if entry["state"] == TCP_ESTABLISHED and entry["local"]["port"] == port:
                peer = entry["remote"]["address"]
                host = f"[{peer}]" if ":" in peer else peer
                found.append({"peer": "{}:{}".format(host, entry["remote"]["port"]), "kind": classify_peer(peer)})
    return found


def sample_ssh(proc_dir_reader, port: int) -> dict[str, Any]:
    """One SSH observation; ``proc_dir_reader(name)`` returns a table's text or None if absent."""
    tables: list[str] = []
    missing: list[str] = []
    for name in ("net/tcp", "net/tcp6"):
        text: str | None = proc_dir_reader(name)
        if text is None:
            missing.append(name)
        else:
            tables.append(text)
    if not tables:
        return {
            "status": "error",
            "detail": "cannot read /proc/{}".format(" or /proc/".join(missing)),
            "port": port,
            "connections": [],
        }
    try:
        connections = ssh_connections(tables, port)
    except ValueError as error:
        return {"status": "error", "detail": str(error), "port": port, "connections": []}
    return {"status": "ok", "detail": "", "port": port, "connections": connections}
