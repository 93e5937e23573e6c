"""Asking the mapping centers (operator commands): each center in turn until one answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from ..config import Network


class NoCenter(Exception):
    """No mapping center answered."""


def call(
    net: Network, method: str, path: str, body: dict[str, Any] | None = None, center: str = "", raw: bytes = b""
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON) from the first center that answers (or `center`); the
    request carries `body` as JSON, or `raw` bytes (a release bundle)."""
    centers = [net.machine(center)] if center else net.by_role("mapper")
    data = raw or (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/octet-stream" if raw else "application/json"}
    if net.operator_token:
        headers["Authorization"] = f"Bearer {net.operator_token}"
    errors = []
    for m in centers:
        url = f"http://{m.address}:{net.ports.management}{path}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (an address from the config)
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"null")
            except ValueError:
                errors.append(f"{m.id}: HTTP {e.code}")
        except (OSError, ValueError) as e:
            errors.append(f"{m.id}: {e}")
    raise NoCenter("; ".join(errors) or "no mapping center in the network file")
