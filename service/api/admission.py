"""How much this gateway replica takes on at once: requests being served, and the bytes of their bodies.

Past either limit a request is answered 503 (`Overloaded`, `Retry-After: 1`) as soon as it arrives, or as its
body does (its declared length, or chunk by chunk), instead of piling up memory until the process dies: a held
request keeps its body, parsed, for as long as it is served, streams included.
"""

from __future__ import annotations

from service.errors import Overloaded


class Admission:
    """The requests under way and the body bytes they hold, against the server settings' limits."""

    def __init__(self, max_requests: int, max_body_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_body_bytes = max_body_bytes
        self.requests = 0
        self.body_bytes = 0
        self.too_many_requests = (f"this gateway serves {max_requests} requests at once "
                                  "(server.max_concurrent_requests); retry shortly")
        self.too_many_bytes = (f"this gateway holds {max_body_bytes} bytes of request bodies at once "
                               "(server.max_concurrent_body_bytes); retry shortly")

    def enter(self) -> Ticket:
        """A request's place, to `release` when it is answered; `Overloaded` where none is free."""
        if self.requests >= self.max_requests:
            raise Overloaded(self.too_many_requests)
        self.requests += 1
        return Ticket(self)


class Ticket:
    """One admitted request's share: its place and the body bytes it holds."""

    __slots__ = ("admission", "body_bytes")

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.body_bytes = 0

    def hold(self, size: int) -> None:
        """Count a body of `size` bytes as held; `Overloaded` where the bodies held would pass the limit."""
        admission = self.admission
        if admission.body_bytes + size > admission.max_body_bytes:
            raise Overloaded(admission.too_many_bytes)
        admission.body_bytes += size
        self.body_bytes += size

    def release(self) -> None:
        """Give the place and the bytes back (once, when the request is answered)."""
        self.admission.requests -= 1
        self.admission.body_bytes -= self.body_bytes
        self.body_bytes = 0
