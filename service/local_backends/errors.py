"""The error local-backend preparation raises: a message for the user and the log that explains it."""

from __future__ import annotations

from pathlib import Path


class BackendError(Exception):
    """Preparing, starting or stopping a local backend failed; `log` says where to look."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (log: {self.log})" if self.log else text


class PortTaken(BackendError):
    """A backend's port is held by another program (not that backend's own server)."""

    def __init__(self, port: int, model: str) -> None:
        super().__init__(f"port {port} is taken by another program; choose another port for {model}")
        self.port = port
        self.model = model
