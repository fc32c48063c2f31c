"""Request ids: the client's `X-Request-Id` where it sent a usable one, else a new one.

Every response carries it as `x-request-id` (as OpenAI's API does: its clients read it, e.g.
`response._request_id`), errors included. Each call to a backend forwards it with a suffix of its own
(`X-Request-Id: <id>-<6 hex>`): vLLM logs it as the request's id, so a request is found in the gateway's
and the backend's logs alike, and two calls never share an id in one engine (vLLM refuses a request whose
id is already running, which a client reusing its ids would otherwise cause).
"""

from __future__ import annotations

import os
import re

HEADER = "x-request-id"
_USABLE = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces: safe to echo in a header line


def request_id(sent: str | None) -> str:
    """The client's id if it is usable, else a new `req_<24 hex>`."""
    if sent is not None and _USABLE.fullmatch(sent):
        return sent
    return "req_" + os.urandom(12).hex()


def upstream_header(request_id: str) -> bytes:
    """The `X-Request-Id` header line of one backend call for `request_id` (ready-encoded, one per call)."""
    return b"X-Request-Id: %s-%s\r\n" % (request_id.encode("ascii"), os.urandom(3).hex().encode())
