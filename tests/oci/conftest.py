"""Real components for the OCI tests: distribution registries (open and htpasswd), a proxy
that corrupts blobs, a hostile registry, and a small real module.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import attrs
import pytest

from tests.conftest import GUEST_OUT, ROOT
from wasmhost.oci.content import digest_of, encode_json
from wasmhost.oci.reference import parse
from wasmhost.oci.registry import RegistryClient

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
USER, PASSWORD = "wasm", "s3cret-pw"


@pytest.fixture(scope="session")
def module() -> bytes:
    """The demo HTTP guest when the Rust guests are built, else a minimal valid module."""
    built = GUEST_OUT / "http-hello.wasm"
    if built.exists():
        return built.read_bytes()
    wasmtime = pytest.importorskip("wasmtime")
    wasm: bytes = wasmtime.wat2wasm('(module (func (export "_start")))')
    return wasm


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A scratch directory removed after the test (pytest's tmp_path is kept around)."""
    with tempfile.TemporaryDirectory(prefix="wasmhost-oci-") as directory:
        yield Path(directory)


@attrs.frozen
class Registry:
    """A running `docker-registry serve` on 127.0.0.1."""

    host: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=1):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # an htpasswd registry is up when it asks for a login
    except OSError:
        return False


def _start_registry(root: Path, htpasswd: Path | None = None) -> Registry:
    if not REGISTRY_BINARY.exists():
        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    port = free_port()
    auth = f"auth:\n  htpasswd:\n    realm: wasmhost-test\n    path: {htpasswd}\n" if htpasswd else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: wasmhost-test\n" + auth
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(config)], stdout=log, stderr=log)
    log.close()
    registry = Registry(f"127.0.0.1:{port}", process)
    deadline = time.monotonic() + 15
    while not _answers(registry.host):
        if process.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            pytest.fail("docker-registry did not start: " + (root / "registry.log").read_text())
        time.sleep(0.05)
    return registry


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """An open registry shared by the session."""
    with tempfile.TemporaryDirectory(prefix="wasmhost-registry-") as root:
        running = _start_registry(Path(root))
        yield running
        running.stop()


@pytest.fixture
def private_registry() -> Iterator[Registry]:
    """A registry of this test's own, which the test may stop."""
    with tempfile.TemporaryDirectory(prefix="wasmhost-registry-") as root:
        running = _start_registry(Path(root))
        yield running
        running.stop()


def _bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash, the only kind distribution accepts.

    Uses the standard library's crypt (libxcrypt's bcrypt; Python <= 3.12), else Apache's
    `htpasswd -Bbn`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**5))
        if hashed and hashed.startswith("$2"):
            return f"{user}:{hashed}\n"
    except (ImportError, AttributeError):
        pass
    if shutil.which("htpasswd"):
        done = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True)
        return done.stdout.strip() + "\n"
    pytest.skip("no bcrypt: neither crypt.METHOD_BLOWFISH nor htpasswd is available")


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[Registry]:
    """A registry that requires USER / PASSWORD (HTTP basic auth from an htpasswd file)."""
    with tempfile.TemporaryDirectory(prefix="wasmhost-registry-") as root:
        htpasswd = Path(root) / "htpasswd"
        htpasswd.write_text(_bcrypt_line(USER, PASSWORD))
        running = _start_registry(Path(root), htpasswd)
        yield running
        running.stop()


@pytest.fixture
def docker_config(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty `DOCKER_CONFIG` directory (no ambient credentials leak into a test)."""
    directory = tmp / "docker"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    monkeypatch.delenv("WASMHOST_REGISTRY_TOKEN", raising=False)
    monkeypatch.delenv("WASMHOST_REGISTRY_USERNAME", raising=False)
    return directory


def write_docker_login(directory: Path, host: str, user: str, password: str) -> None:
    """What `docker login HOST` leaves in config.json."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


@attrs.frozen
class Proxy:
    host: str
    server: http.server.ThreadingHTTPServer


def _start_proxy(upstream: str, *, corrupt: bool, statuses: list[int]) -> Proxy:
    """Forward to `upstream`; answer the first requests with `statuses`; maybe flip blob bytes."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if statuses:
                self.send_response(statuses.pop(0))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            connection = http.client.HTTPConnection(upstream, timeout=10)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request(self.command, self.path, headers=headers)
                answer = connection.getresponse()
                body = answer.read()
            finally:
                connection.close()
            if corrupt and self.command == "GET" and "/blobs/" in self.path and body:
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            length = answer.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(body))
            self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return Proxy(f"127.0.0.1:{server.server_address[1]}", server)


@pytest.fixture
def proxy(registry: Registry) -> Iterator[Callable[..., Proxy]]:
    """`proxy(corrupt=True)` flips a byte of every blob; `proxy(statuses=[503])` fails first."""
    started: list[Proxy] = []

    def start(*, corrupt: bool = False, statuses: Sequence[int] = ()) -> Proxy:
        started.append(_start_proxy(registry.host, corrupt=corrupt, statuses=list(statuses)))
        return started[-1]

    yield start
    for running in started:
        running.server.shutdown()
        running.server.server_close()


def publish(host: str, name: str, manifest: Mapping[str, object], media_type: str, blobs: Sequence[bytes]) -> str:
    """Put hand-made content in the registry the way other tools would; returns its digest."""
    ref = parse(f"{host}/{name}")
    with RegistryClient(ref) as client:
        for blob in blobs:
            client.upload_blob(ref, blob)
        body = encode_json({"schemaVersion": 2, "mediaType": media_type, **manifest})
        client.put_manifest(ref, body, media_type)
    return digest_of(body)


def image_config(runtime: dict[str, object]) -> bytes:
    """A Linux image config such as `docker build` writes (diff_ids are not checked on pull)."""
    return encode_json(
        {"os": "linux", "architecture": "amd64", "config": runtime, "rootfs": {"type": "layers", "diff_ids": []}}
    )


#: What the hostile server answers for a path: status, headers (Content-Length or none, for a
#: body that ends when the connection closes), and the body, produced lazily so it can be huge.
#: A route keyed "PATH AUTHORIZATION" answers only requests with that Authorization header.
Answer = tuple[int, dict[str, str], Callable[[], Iterator[bytes]]]


@attrs.frozen
class Hostile:
    """A registry that answers with whatever a test wants, bodies of any size included."""

    host: str
    server: http.server.ThreadingHTTPServer
    #: Every request as "PATH?QUERY AUTHORIZATION", in order.
    requests: list[str]


def _start_hostile(routes: Mapping[str, Answer]) -> Hostile:
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization", "")
            requests.append(f"{self.path} {authorization}".strip())
            path = self.path.split("?")[0]
            answer = routes.get(f"{path} {authorization}") or routes.get(path)
            if answer is None:
                self.send_response(200 if self.path == "/v2/" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, headers, body = answer
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                for chunk in body():
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: what a capped reader does

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return Hostile(f"127.0.0.1:{server.server_address[1]}", server, requests)


@pytest.fixture
def hostile() -> Iterator[Callable[[Mapping[str, Answer]], Hostile]]:
    """`hostile({"/v2/repo/manifests/v1": (status, headers, body)})` starts a hostile registry
    (routes may be added once it runs and its address is known)."""
    started: list[Hostile] = []

    def start(routes: Mapping[str, Answer]) -> Hostile:
        started.append(_start_hostile(routes))
        return started[-1]

    yield start
    for running in started:
        running.server.shutdown()
        running.server.server_close()


@attrs.frozen
class Measured:
    """A finished `python -m wasmhost` process: exit code, stderr and peak resident memory."""

    code: int
    stderr: str
    peak_rss: int


#: Runs the CLI, then writes its own peak RSS (VmHWM: this process's memory since its exec,
#: which ``ru_maxrss`` is not: exec after vfork carries the parent's high-water mark over).
_MEASURED_CLI = """
import atexit, os, sys
from wasmhost.cli import main

def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    os.write(int(sys.argv[1]), peak.encode())

atexit.register(report)
sys.exit(main(sys.argv[2:]))
"""


def run_measured(*args: str | os.PathLike[str], env: Mapping[str, str], timeout: float = 120) -> Measured:
    """Run the wasmhost CLI with ARGS; its peak RSS comes back through a pipe."""
    read, write = os.pipe()
    try:
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", _MEASURED_CLI, str(write), *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, **env},
                cwd=ROOT,
                pass_fds=(write,),
            )
            os.close(write)
            write = -1
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            peak_kib = int(os.read(read, 64) or b"0")
            stderr.seek(0)
            return Measured(process.returncode, stderr.read().decode(), peak_kib * 1024)
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
