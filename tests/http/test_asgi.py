"""The ASGI adapter: components mounted in Starlette under a real uvicorn, called by real clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import attrs
import pytest

uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is a test extra (pip install -e '.[test]')")
starlette = pytest.importorskip("starlette", reason="starlette is a test extra (pip install -e '.[test]')")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request as StarletteRequest  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402

from wasmhost import Module  # noqa: E402
from wasmhost.asgi import ComponentApp, Message, Receive, Scope, Send  # noqa: E402
from wasmhost.cache import CompileCache  # noqa: E402
from wasmhost.http import HttpLimits  # noqa: E402
from wasmhost.net.loop import new_loop  # noqa: E402

TEN_MB = 10 * 1024 * 1024
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@attrs.define
class Uvicorn:
    """A uvicorn server on 127.0.0.1 (an ephemeral port) in its own loop thread."""

    server: uvicorn.Server
    thread: threading.Thread
    port: int

    def get(self, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            connection.close()


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[Uvicorn]:
    """Serve ``app`` under uvicorn (lifespan on) until the block ends, then stop it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    loop = new_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield Uvicorn(server, thread, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(30)
        loop.close()
        sock.close()


@pytest.fixture(scope="module")
def modules(component: Callable[[str], Path], component_dir: Path) -> dict[str, Module]:
    cache = CompileCache(component_dir)
    names = ("hello", "echo", "inspect", "trap", "never", "trailers")
    return {name: Module(component(name), cache=cache) for name in names}


@pytest.fixture(scope="module")
def site(modules: dict[str, Module]) -> Iterator[Uvicorn]:
    """A Starlette site: a plain Python route next to components mounted at paths."""
    apps = {
        "/hello": ComponentApp(modules["hello"]),
        "/echo": ComponentApp(modules["echo"], reuse=10),
        "/small-echo": ComponentApp(modules["echo"], limits=HttpLimits(max_body_bytes=1000)),
        "/inspect": ComponentApp(modules["inspect"]),
        "/trap": ComponentApp(modules["trap"]),
        "/never": ComponentApp(modules["never"], limits=HttpLimits(request_timeout=1.0)),
    }

    async def python_route(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse(f"python at {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        for app in apps.values():
            await app.close()

    routes = [Route("/py", python_route), *(Mount(path, app=app) for path, app in apps.items())]
    with serving(Starlette(routes=routes, lifespan=lifespan)) as running:
        yield running
    assert all(app.handler.live == 0 for app in apps.values()), "an instance was left alive"


def test_a_component_mounted_next_to_a_python_route(site: Uvicorn) -> None:
    status, _, body = site.get("/py")
    assert (status, body) == (200, b"python at /py")
    status, headers, body = site.get("/hello/")
    assert (status, body) == (200, b"Hello, World!")
    assert headers["content-type"] == "text/plain"
    assert site.get("/hello/any/path?x=1")[2] == b"Hello, World!"


def test_head_has_the_headers_of_get_and_no_body(site: Uvicorn) -> None:
    get_status, get_headers, _ = site.get("/hello/")
    status, headers, body = site.get("/hello/", method="HEAD")
    assert (status, body) == (get_status, b"")
    assert headers["content-type"] == get_headers["content-type"]


def test_the_guest_sees_the_path_below_the_mount(site: Uvicorn) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    connection.putrequest("GET", "/inspect/a/caf%C3%A9?q=1&q=two")
    for value in ("one", "two"):
        connection.putheader("x-repeated", value)
    connection.endheaders()
    answer = connection.getresponse()
    report = json.loads(answer.read())
    connection.close()
    assert answer.status == 200
    assert (report["method"], report["path"], report["query"]) == ("GET", "/a/caf%C3%A9", "q=1&q=two")
    assert [value for name, value in report["headers"] if name == "x-repeated"] == ["one", "two"]
    assert json.loads(site.get("/inspect/")[2])["path"] == "/"


def test_echo_streams_10_mb_with_curl(site: Uvicorn, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(TEN_MB))
    answer = tmp_path / "answer"
    done = subprocess.run(
        ["curl", "-sS", "--fail", "-o", str(answer), "-H", "content-type: application/x-test",
         "--data-binary", f"@{payload}", f"http://127.0.0.1:{site.port}/echo/"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(answer.read_bytes()).digest() == hashlib.sha256(payload.read_bytes()).digest()


def test_echo_answers_before_a_chunked_upload_ends(site: Uvicorn) -> None:
    """The body flows both ways as it goes: the first bytes come back while the client still
    holds the rest of its upload."""
    chunk = os.urandom(64 * 1024)
    with socket.create_connection(("127.0.0.1", site.port), timeout=60) as sock:
        sock.sendall(b"POST /echo/ HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        received = b""
        while chunk[:1000] not in received:
            data = sock.recv(65536)
            assert data, "the connection closed before any echo"
            received += data
        assert received.startswith(b"HTTP/1.1 200 ")
        rest = os.urandom(TEN_MB)

        def upload() -> None:  # meanwhile: an echo client that stops reading stops its own upload
            for start in range(0, len(rest), 1 << 20):
                part = rest[start : start + (1 << 20)]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sock.sendall(b"0\r\n\r\n")

        uploading = threading.Thread(target=upload)
        uploading.start()
        while not received.endswith(b"\r\n0\r\n\r\n"):
            data = sock.recv(1 << 20)
            assert data, "the connection closed before the end of the echo"
            received += data
        uploading.join(60)
    _head, _, chunked = received.partition(b"\r\n\r\n")
    body = b""
    while True:
        size_line, _, chunked = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, chunked = body + chunked[:size], chunked[size + 2 :]
    assert hashlib.sha256(body).digest() == hashlib.sha256(chunk + rest).digest()


def test_a_declared_body_over_the_limit_is_413(site: Uvicorn) -> None:
    status, _, body = site.get("/small-echo/", method="POST", body=b"x" * 2000)
    assert status == 413
    assert b"over 1000 bytes" in body
    assert site.get("/small-echo/", method="POST", body=b"x" * 999)[2] == b"x" * 999


def test_a_chunked_body_over_the_limit_cuts_the_echo_short(site: Uvicorn) -> None:
    """The echo has answered before it reads: crossing the limit ends its response unfinished."""
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=30)
    connection.request("POST", "/small-echo/", body=iter([b"x" * 600, b"y" * 600]), encode_chunked=True)
    answer = connection.getresponse()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        answer.read()
    connection.close()
    assert site.get("/small-echo/", method="POST", body=b"z" * 10)[2] == b"z" * 10


def test_a_trap_is_500_and_the_site_goes_on(site: Uvicorn, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="wasmhost.http"):
        status, _, body = site.get("/trap/")
    assert (status, body) == (500, b"500 Internal Server Error: the handler failed\n")
    (line,) = [r.getMessage() for r in caplog.records if "-> 500" in r.getMessage()]
    assert "\n" not in line
    assert line.endswith("trap.wasm: guest trapped: unreachable"), line
    assert site.get("/hello/")[2] == b"Hello, World!"


def test_a_guest_that_never_answers_is_504(site: Uvicorn) -> None:
    started = time.monotonic()
    status, _, body = site.get("/never/")
    took = time.monotonic() - started
    assert status == 504
    assert body == b"504 Gateway Timeout: no response within 1s\n"
    assert 0.9 <= took < 10
    assert site.get("/hello/")[2] == b"Hello, World!"


def test_a_guest_that_does_not_read_holds_the_upload_back(site: Uvicorn) -> None:
    """Body bytes are received only as the guest reads them: a client uploading 32 MB to a guest
    that never reads gets no further than the socket buffers before the 504."""
    declared = 32 * 1024 * 1024
    piece = b"x" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", site.port), timeout=30) as sock:
        sock.sendall(b"POST /never/ HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % declared)
        sock.setblocking(False)
        until = time.monotonic() + 0.8  # the mount's request_timeout is 1 s
        while time.monotonic() < until and sent < declared:
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                time.sleep(0.01)
        sock.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, "the connection closed without an answer"
            answer += data
    assert answer.startswith(b"HTTP/1.1 504 ")
    assert sent < declared // 2, f"{sent} bytes were taken from a client whose guest reads nothing"


def test_the_app_alone_gets_lifespan_events(modules: dict[str, Module]) -> None:
    app = ComponentApp(modules["hello"], pool=2)
    with serving(app) as running:
        assert app.handler.live == 2  # the pool was filled at startup
        assert running.get("/")[2] == b"Hello, World!"
    assert app.handler.live == 0  # released at shutdown


def called(app: ComponentApp, method: str, extensions: dict[str, object]) -> list[Message]:
    """The messages ``app`` sends for one chunked "hello" upload, called the way an ASGI server
    calls it (the last ``receive`` waits, as a server's does until the client goes)."""
    incoming = [{"type": "http.request", "body": b"hel", "more_body": True},
                {"type": "http.request", "body": b"lo", "more_body": False}]  # fmt: skip
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"x"), (b"transfer-encoding", b"chunked")], "extensions": extensions,
    }  # fmt: skip
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    async def exchange() -> None:
        try:
            await app(scope, receive, send)
        finally:
            await app.close()

    asyncio.run(exchange())
    return sent


def test_response_trailers_go_to_a_server_that_takes_them(modules: dict[str, Module]) -> None:
    sent = called(ComponentApp(modules["trailers"]), "POST", {"http.response.trailers": {}})
    assert [m["type"] for m in sent[:1] + sent[-2:]] == ["http.response.start", "http.response.body",
                                                         "http.response.trailers"]  # fmt: skip
    assert sent[0]["status"] == 200 and sent[0]["trailers"] is True
    assert b"".join(m["body"] for m in sent if m["type"] == "http.response.body") == b"hello"
    assert sent[-2]["more_body"] is False
    # ASGI carries no request trailers, so the guest counts none; its own trailer still goes out.
    assert sent[-1] == {"type": "http.response.trailers", "headers": [(b"x-trailer-count", b"0")],
                        "more_trailers": False}  # fmt: skip


@pytest.mark.parametrize(("method", "extensions"), [("POST", {}), ("HEAD", {"http.response.trailers": {}})])
def test_no_trailers_where_the_server_or_the_request_has_no_room(modules: dict[str, Module], method: str,
                                                                  extensions: dict[str, object]) -> None:  # fmt: skip
    sent = called(ComponentApp(modules["trailers"]), method, extensions)
    assert sent[0]["type"] == "http.response.start" and not sent[0].get("trailers")
    assert sent[-1]["type"] == "http.response.body" and sent[-1]["more_body"] is False
    assert all(m["type"] != "http.response.trailers" for m in sent)
