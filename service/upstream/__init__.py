"""The gateway's HTTP/1.1 client for its backends: pooled keep-alive connections, httptools parsing."""

from service.upstream.client import UpstreamClient, bearer_header
from service.upstream.connection import (
    Origin,
    Response,
    ResponseTooLarge,
    UpstreamConnectError,
    UpstreamConnectionError,
    host_and_port,
)

__all__ = ["Origin", "Response", "ResponseTooLarge", "UpstreamClient", "UpstreamConnectError",
           "UpstreamConnectionError", "bearer_header", "host_and_port"]
