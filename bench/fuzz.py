"""Fuzzing and hostile input against a live gateway process.

    python bench/fuzz.py [--examples 500] [--skip-schemathesis]

Starts two simulators and `switchyard serve` over them (loopback), then:
1. schemathesis against openapi.yaml (--examples per operation; a few thousand cases in all): no 5xx,
   no status the contract does not list, responses matching their schemas;
2. hostile requests, each of which must be answered cleanly (a 4xx with an OpenAI-shaped error, or for
   a request HTTP itself rejects, a 4xx or a closed connection) while an ordinary request from
   another client is still served, during the attack for the slow ones and right after for the rest.
Prints one line per case; exits non-zero when any case fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from bench.servers import REPO, gateway_process, sim_process  # noqa: E402
from router_models.cli.arguments import at_least  # noqa: E402

HEAD_TIMEOUT_S = 5.0  # the gateway's server.head_timeout_s in these runs: outlasts the checks made during an attack
CHAT = {"model": "sim-a", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


@dataclass
class Answer:
    """What came back on a raw connection: status 0 when the server closed it without a response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def is_openai_error(self) -> bool:
        try:
            error = orjson.loads(self.body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            return False
        return isinstance(error, dict) and isinstance(error.get("message"), str) and "type" in error


# Raw HTTP/1.1 on loopback: hostile requests need byte-level control ---------------------------------
class NoAnswer(Exception):
    """The server neither answered nor closed the connection in time."""


async def exchange(port: int, data: bytes | list[bytes], *, pause: float = 0.0, wait: float = 10.0) -> Answer:
    """Send `data` (pieces `pause` seconds apart) on a fresh connection and read one response.

    The response is read while the request is still being sent: a server may refuse a request early
    (a body over the limit) and the answer must be caught before the rest of the upload resets it.
    """
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)] if isinstance(data, bytes) else data
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):  # the server may close before the whole request is sent
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(wait):
            return await read_response(reader)
    except TimeoutError:
        raise NoAnswer(f"no answer within {wait} s") from None
    finally:
        sender.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> Answer:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return Answer(0, {}, b"")  # closed without a response
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read()
    return Answer(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return b"".join(parts)


def post(path: str, body: bytes, content_type: str | None = "application/json", extra: bytes = b"",
         length: int | None = None) -> bytes:
    """A whole HTTP/1.1 request; `length` declares a Content-Length other than the body's."""
    declared = len(body) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n".encode()
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    return head + extra + b"Connection: close\r\n\r\n" + body


def chat(**fields: object) -> bytes:
    return orjson.dumps({**CHAT, **fields})


async def served(port: int) -> bool:
    """An ordinary client's request gets an ordinary answer."""
    try:
        answer = await exchange(port, post("/v1/chat/completions", chat()))
    except NoAnswer:
        return False
    return answer.status == 200 and b'"choices"' in answer.body


# The cases ---------------------------------------------------------------------------------------
Check = Callable[[int], Awaitable[str | None]]  # None: passed; else what went wrong


def expect(data: bytes | list[bytes], statuses: set[int], *, openai: bool = True, forbid_header: str = "",
           pause: float = 0.0) -> Check:
    """A single hostile request answered with one of `statuses` (0: connection closed) and an error body."""

    async def check(port: int) -> str | None:
        try:
            answer = await exchange(port, data, pause=pause)
        except NoAnswer as error:
            return str(error)
        if answer.status not in statuses:
            return f"status {answer.status}, expected {sorted(statuses)}: {answer.body[:120]!r}"
        if openai and answer.status and not answer.is_openai_error():
            return f"status {answer.status} without an OpenAI error body: {answer.body[:120]!r}"
        if forbid_header and forbid_header in answer.headers:
            return f"response carries an injected header {forbid_header!r}"
        return None

    return check


def while_attacked(attack: Callable[[int], Coroutine[Any, Any, object]], attackers: int = 1) -> Check:
    """Others are served while `attackers` connections run `attack`, which must still be going on."""

    async def check(port: int) -> str | None:
        tasks = [asyncio.create_task(attack(port)) for _ in range(attackers)]
        try:
            await asyncio.sleep(0.3)  # the attack is under way
            results = [await served(port) for _ in range(5)]
            still_attacking = sum(not t.done() for t in tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not all(results):
            return f"ordinary requests failed during the attack: {results}"
        if still_attacking < attackers:
            return f"only {still_attacking}/{attackers} attacking connections were still open"
        return None

    return check


async def trickle_headers(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for byte in b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
    finally:
        writer.close()


async def idle_half_request(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        await asyncio.sleep(3600)
    finally:
        writer.close()


async def trickle_body(port: int) -> None:
    body = chat()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(post("/v1/chat/completions", body)[: -len(body)])
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)
    finally:
        writer.close()


async def abandon_streams(port: int) -> str | None:
    """Clients that leave in the middle of a stream; the gateway goes on serving the others."""
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/v1/chat/completions", chat(stream=True, max_tokens=64)))
        await writer.drain()
        await reader.readuntil(b"data: ")
        writer.transport.abort()
    return None if await served(port) else "ordinary request failed after abandoned streams"


def _deep(depth: int, opener: bytes, closer: bytes) -> bytes:
    return b'{"model":"sim-a","messages":[{"role":"user","content":"x"}],"x":' + opener * depth + closer * depth + b"}"


BAD = {400}
CASES: dict[str, Check] = {
    "huge body (Content-Length)": expect(post("/v1/chat/completions", b"x" * (5 << 20)), {413}, pause=0.2),
    "huge body (chunked)": expect(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + (b"100000\r\n" + b"x" * 0x100000 + b"\r\n") * 5 + b"0\r\n\r\n", {413}, pause=0.05),
    "Content-Length shorter than the body": expect(
        post("/v1/chat/completions", chat(), length=5), {400, 0}),
    "deep JSON arrays": expect(post("/v1/chat/completions", _deep(100_000, b"[", b"]")), BAD),
    "deep JSON objects": expect(post("/v1/chat/completions", _deep(50_000, b'{"a":', b"}")), BAD),
    "invalid UTF-8": expect(post("/v1/chat/completions", chat()[:-3] + b'\xff\xfe"}'), BAD),
    "invalid UTF-8 in model": expect(post("/v1/chat/completions", chat().replace(b"sim-a", b"sim-\xc3\x28")), BAD),
    "lone surrogate escape": expect(post("/v1/chat/completions", chat().replace(b"hello", b"\\ud800")), {200, 400}),
    "text/plain body": expect(post("/v1/chat/completions", chat(), "text/plain"), {415}),
    "form body": expect(post("/v1/chat/completions", b"model=sim-a", "application/x-www-form-urlencoded"), {415}),
    "multipart body": expect(post("/v1/chat/completions", chat(), "multipart/form-data; boundary=x"), {415}),
    "XML body": expect(post("/v1/chat/completions", b"<model>sim-a</model>", "application/xml"), {415}),
    "empty body": expect(post("/v1/chat/completions", b""), BAD),
    "JSON array body": expect(post("/v1/chat/completions", b"[]"), BAD),
    "JSON null body": expect(post("/v1/chat/completions", b"null"), BAD),
    "NaN temperature": expect(post("/v1/chat/completions", chat()[:-1] + b',"temperature":NaN}'), BAD),
    "max_tokens 1e30": expect(post("/v1/chat/completions", chat()[:-1] + b',"max_tokens":1' + b"0" * 30 + b"}"), BAD),
    "max_tokens 2^63": expect(post("/v1/chat/completions", chat(max_tokens=2**63 - 1)), BAD),
    "max_tokens -1": expect(post("/v1/chat/completions", chat(max_tokens=-1)), BAD),
    "max_tokens 1e309": expect(post("/v1/chat/completions", chat()[:-1] + b',"max_tokens":1e309}'), BAD),
    "n 10^9": expect(post("/v1/chat/completions", chat(n=10**9)), BAD),
    "n 0": expect(post("/v1/chat/completions", chat(n=0)), BAD),
    "stream_options not an object": expect(post("/v1/chat/completions", chat(stream=True, stream_options="x")), BAD),
    "10k messages of 10 bytes": expect(post("/v1/chat/completions", chat(
        messages=[{"role": "user", "content": "0123456789"}] * 10_000, max_tokens=1)), {200}, openai=False),
    "CR/LF in model": expect(post("/v1/chat/completions", chat(model="sim-a\r\nX-Injected: 1")), {400, 404},
                             forbid_header="x-injected"),
    "LF Set-Cookie in model": expect(post("/v1/chat/completions", chat(model="sim-a\nSet-Cookie: a=b")),
                                     {400, 404}, forbid_header="set-cookie"),
    "CR/LF in model suffix": expect(post("/v1/chat/completions", chat(model="sim-a:\r\nX-Injected: 1")),
                                    {400, 404}, forbid_header="x-injected"),
    "NUL in model": expect(post("/v1/chat/completions", chat(model="sim-a\x00")), {400, 404}),
    "unicode model": expect(post("/v1/chat/completions", chat(model="\u202emodèle-模型\U0001f600")), {400, 404}),
    "10k-char model": expect(post("/v1/chat/completions", chat(model="m" * 10_000)), BAD),
    "CR/LF in a request header": expect(post("/v1/chat/completions", chat(), extra=b"X-A: b\nX-Injected: 1\r\n"),
                                        {400, 0}, openai=False, forbid_header="x-injected"),
    "8 KiB header": expect(post("/v1/chat/completions", chat(), extra=b"X-Big: " + b"a" * 8192 + b"\r\n"),
                           {200}, openai=False),
    "100 KiB header": expect(post("/v1/chat/completions", chat(), extra=b"X-Big: " + b"a" * 102_400 + b"\r\n"),
                             {431, 0}),
    "32 MiB header": expect(post("/v1/chat/completions", chat(), extra=b"X-Big: " + b"a" * (32 << 20) + b"\r\n"),
                            {431, 0}),
    "10k headers": expect(post("/v1/chat/completions", chat(),
                               extra=b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))), {431, 0}),
    "idle connection": expect([b""], {408}, pause=HEAD_TIMEOUT_S + 5),
    "slow-loris headers are cut off": expect([bytes([b]) for b in b"POST / HTTP/1.1\r\nX-Slow: " + b"a" * 1000],
                                             {408, 0}, pause=0.05),
    "not HTTP at all": expect(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, {400, 0}, openai=False),
    "GET on a POST endpoint": expect(b"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                     {405}),
    "unknown path": expect(b"GET /v1/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", {404}),
    "slow-loris headers": while_attacked(trickle_headers),
    "200 idle half-sent requests": while_attacked(idle_half_request, attackers=200),
    "slow-loris body": while_attacked(trickle_body),
    "abandoned streams": abandon_streams,
}


async def run_case(port: int, check: Check) -> str | None:
    """Run one case and then make sure another client is still served."""
    problem = await check(port)
    if problem is None and not await served(port):
        problem = "an ordinary request failed after the case"
    return problem


def run_hostile(port: int, names: list[str] | None = None) -> dict[str, str | None]:
    results = {}
    for name in names or list(CASES):
        started = time.perf_counter()
        results[name] = problem = asyncio.run(run_case(port, CASES[name]))
        print(f"  {'ok  ' if problem is None else 'FAIL'} {name} ({time.perf_counter() - started:.1f} s)"
              + (f": {problem}" if problem else ""), flush=True)
    return results


def run_schemathesis(url: str, examples: int, workdir: Path) -> bool:
    """schemathesis against the live gateway, its output streamed as it runs."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", str(REPO / "openapi.yaml"), "--url", url,
        # one worker: CPython 3.11's `ast` module is not thread-safe, and two workers made schemathesis itself
        # crash now and then ("AST constructor recursion depth mismatch") with every case passed
        "--max-examples", str(examples), "--no-color", "--workers", "1",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance,negative_data_rejection",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir) as run:
        assert run.stdout is not None
        for line in run.stdout:
            if line.strip():
                print("  " + line.rstrip(), flush=True)
    return run.returncode == 0


@contextlib.contextmanager
def live_gateway(directory: Path) -> Iterator[str]:
    with sim_process("sim-a") as sim_a, sim_process("sim-b") as sim_b, \
            gateway_process({"sim-a": sim_a, "sim-b": sim_b}, directory,
                            extra={"server": {"head_timeout_s": HEAD_TIMEOUT_S}}) as url:
        yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=at_least(1), default=500,
                        help="schemathesis examples per operation (default 500)")
    parser.add_argument("--skip-schemathesis", action="store_true", help="run the hostile cases only")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), help="hostile cases to run (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, live_gateway(Path(tmp)) as url:
        port = int(url.rsplit(":", 1)[1])
        ok = True
        if not args.skip_schemathesis:
            print(f"schemathesis, {args.examples} examples per operation:", flush=True)
            ok = run_schemathesis(url, args.examples, Path(tmp))
        print("hostile input:", flush=True)
        results = run_hostile(port, args.cases)
    failed = [name for name, problem in results.items() if problem]
    print(f"hostile cases: {len(results) - len(failed)}/{len(results)} passed; schemathesis: "
          f"{'skipped' if args.skip_schemathesis else 'passed' if ok else 'FAILED'}")
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
