"""How the soak counts an answer: succeeded, failed cleanly, or lost."""

from __future__ import annotations

import pytest

from bench.soak import judge

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
ERROR = b'{"error":{"message":"backend gone","type":"upstream_error","param":null,"code":null}}'
SSE = "text/event-stream; charset=utf-8"


@pytest.mark.parametrize(("status", "content_type", "raw", "stream", "outcome"), [
    (200, "application/json", b'{"choices":[]}', False, "succeeded"),
    (200, SSE, CHUNK + b"data: [DONE]\n\n", True, "succeeded"),
    (200, SSE, CHUNK + b"data: " + ERROR + b"\n\ndata: [DONE]\n\n", True, "failed_clean"),
    (502, "application/json", ERROR, False, "failed_clean"),
    (502, "application/json", ERROR, True, "failed_clean"),
    (200, SSE, CHUNK, True, "lost"),  # cut off: no [DONE]
    (200, SSE, CHUNK + b"data: {not json\n\ndata: [DONE]\n\n", True, "lost"),
    (200, "application/json", b'{"id": 1}', False, "lost"),
    (500, "text/html", b"<html>Internal Server Error</html>", False, "lost"),
    (400, "application/json", b'{"detail": "bad"}', False, "lost"),  # not the OpenAI error shape
])
def test_every_answer_is_counted_once(status: int, content_type: str, raw: bytes, stream: bool,
                                      outcome: str) -> None:
    assert judge(status, content_type, raw, stream)[0] == outcome
