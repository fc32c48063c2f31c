"""A stand-in for the vLLM venv: its `python` runs a tiny HTTP server that answers `/health` like vLLM."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.local_backends import process
from service.local_backends.paths import CacheDir

FAKE_SERVER = '''
import argparse, http.server, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("-m")
parser.add_argument("--port", type=int)
parser.add_argument("--served-model-name")
args, _ = parser.parse_known_args()
if args.served_model_name == "crashes":
    print("fake vLLM: cannot load the model", flush=True)
    sys.exit(3)
if args.served_model_name == "slow":
    time.sleep(1.5)

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        healthy = args.served_model_name != "sick"  # "sick": runs, never healthy
        self.send_response((200 if healthy else 503) if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", args.port), Health).serve_forever()
'''


@pytest.fixture
def fake_cache(tmp_path: Path) -> Iterator[CacheDir]:
    """A cache whose vLLM `python` starts the fake server (keeping vLLM's module name in its command line);
    every server still running at the end is stopped."""
    cache = CacheDir(tmp_path / "cache")
    cache.ensure()
    cache.python.parent.mkdir(parents=True)
    server = tmp_path / "fake_vllm.py"
    server.write_text(FAKE_SERVER)
    cache.python.write_text(f'#!/bin/sh\nexec {sys.executable} {server} "$@"\n')
    cache.python.chmod(0o755)
    yield cache
    for record in process.list_records(cache):
        process.stop(cache, record.id)
