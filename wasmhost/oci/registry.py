"""The registry side: the few OCI distribution API calls a push or pull needs.

oras-py provides the HTTP session and parses bearer challenges (realm, service, scope). The
requests themselves are ours, the token request included: oras-py re-serializes manifests on
upload (changing their digest), hides the raw bytes that must be verified, retries every
failure for minutes, and reads whole answers, however large.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Final, TextIO

import attrs
import oras.auth.utils
import oras.provider
import requests
import urllib3

from . import media
from ._closing import Closing
from .content import DIGEST_RE, Descriptor, decode_json_object, digest_of
from .credentials import Credentials, find_credentials
from .errors import (
    AccessDenied,
    AuthenticationRequired,
    DigestMismatch,
    NotFound,
    RegistryError,
    Unreachable,
    UnsupportedMediaType,
)
from .limits import ERROR_BODY, MANIFEST, TOKEN_ANSWER, Limit
from .progress import Progress
from .reference import Reference

ACCEPT: Final = ", ".join([media.OCI_MANIFEST, media.OCI_INDEX, media.DOCKER_MANIFEST, media.DOCKER_MANIFEST_LIST])
#: Statuses worth another try: rate limiting and overloaded or restarting proxies.
TRANSIENT: Final = frozenset({429, 502, 503, 504})
CHUNK: Final = 64 * 1024
_REASONS: Final = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "unknown host"),
    ("name resolution", "unknown host"),
    ("timed out", "timed out"),
    ("CERTIFICATE_VERIFY_FAILED", "certificate not trusted"),
    ("WRONG_VERSION_NUMBER", "the server does not speak TLS"),
)


@attrs.frozen
class Retry:
    """How often to retry a request that failed for a transient reason, and how patiently."""

    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    #: Seconds before the second attempt, doubled before each further one.
    backoff: float = 0.25


def _reason(error: Exception) -> str:
    text = str(error)
    return next((reason for needle, reason in _REASONS if needle in text), type(error).__name__)


def _registry_message(response: requests.Response) -> str:
    """The first `{"errors": [{"code", "message"}]}` entry of an error body (its start only), if any."""
    try:
        errors = json.loads(response.raw.read(ERROR_BODY, decode_content=False)).get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError, requests.RequestException, urllib3.exceptions.HTTPError):
        return ""


def _chunks(response: requests.Response, what: str, subject: str) -> Iterator[bytes]:
    """A streamed body's bytes exactly as sent, never more than CHUNK at a time."""
    try:
        yield from response.raw.stream(CHUNK, decode_content=False)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise Unreachable(what, f"download of {subject} cut off ({_reason(exc)})") from None


def _read_capped(response: requests.Response, limit: Limit, what: str, subject: str) -> bytes:
    """A streamed body, refused as soon as Content-Length or the bytes received pass `limit`."""
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limit.size:
        raise limit.refuse(what, subject, int(announced))
    body = bytearray()
    for chunk in _chunks(response, what, subject):
        body += chunk
        if len(body) > limit.size:
            raise limit.refuse(what, subject)
    return bytes(body)


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def connect(
    reference: Reference, *, insecure: bool | None, credentials: Credentials | None, progress: bool
) -> RegistryClient:
    """A client for a push or pull: credentials from `find_credentials`, progress on stderr."""
    return RegistryClient(
        reference,
        insecure=insecure,
        credentials=find_credentials(reference.registry, credentials),
        progress=sys.stderr if progress else None,
    )


class _Upload:
    """A request body that reports progress as http.client reads it."""

    def __init__(self, data: bytes, progress: Progress) -> None:
        self._data, self._offset, self._progress = data, 0, progress

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._offset + size
        chunk = self._data[self._offset : end]
        self._offset += len(chunk)
        self._progress.advance(len(chunk))
        if self._offset == len(self._data):
            self._progress.close()
        return chunk


class RegistryClient(Closing):
    """One registry's HTTP API. Plain HTTP for localhost unless `insecure` says otherwise.

    Every response is streamed, and bodies are read only as far as their limits: a registry
    decides neither how much this process holds in memory nor what it decompresses.
    """

    def __init__(
        self,
        reference: Reference,
        *,
        insecure: bool | None = None,
        credentials: Credentials | None = None,
        progress: TextIO | None = None,
        retry: Retry = Retry(),
        timeout: float = 30.0,
    ) -> None:
        plain = reference.is_local if insecure is None else insecure
        self.registry = reference.registry
        self._oras = oras.provider.Registry(hostname=reference.endpoint, insecure=plain)
        self._session: requests.Session = self._oras.session
        self._session.headers["Accept-Encoding"] = "identity"  # digests are over the bytes as stored
        self._base = f"{'http' if plain else 'https'}://{reference.endpoint}/v2/"
        self._credentials = credentials
        self._authorization: str | None = None
        self._progress, self._retry, self._timeout = progress, retry, timeout

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def get_manifest(self, ref: Reference) -> tuple[bytes, str, str]:
        """The manifest or index `ref` names: its bytes, content type and verified digest."""
        what = str(ref)
        url = self._url(ref, "manifests", ref.manifest_key)
        with self._request("GET", url, what, headers={"Accept": ACCEPT}) as response:
            if response.status_code != 200:
                raise self._error(response, what, "manifest")
            body = _read_capped(response, MANIFEST, what, "manifest")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            expected = ref.digest or response.headers.get("Docker-Content-Digest", "")
        digest = digest_of(body)
        if DIGEST_RE.fullmatch(expected) and expected != digest:
            raise DigestMismatch(what, f"manifest hashes to {digest}, not {expected}")
        return body, content_type, digest

    def blob_chunks(self, ref: Reference, blob: Descriptor) -> Iterator[bytes]:
        """Stream a blob's bytes exactly as stored (the caller verifies the digest)."""
        what = str(ref)
        with self._request("GET", self._url(ref, "blobs", blob.digest), what) as response:
            if response.status_code != 200:
                raise self._error(response, what, f"blob {blob.digest}")
            progress = Progress(f"pull {blob.digest[7:19]}", blob.size, self._progress)
            try:
                for chunk in _chunks(response, what, blob.digest):
                    progress.advance(len(chunk))
                    yield chunk
            finally:
                progress.close()

    def has_blob(self, ref: Reference, digest: str) -> bool:
        """Whether the repository already holds the blob (so a push can skip it)."""
        what = str(ref)
        with self._request("HEAD", self._url(ref, "blobs", digest), what) as response:
            if response.status_code in (200, 404):
                return response.status_code == 200
            raise self._error(response, what, f"blob {digest}")

    def upload_blob(self, ref: Reference, data: bytes) -> None:
        """Upload one blob: open an upload session, then PUT the bytes with their digest."""
        what, digest = str(ref), digest_of(data)
        url = self._url(ref, "blobs", "uploads/")
        with self._request("POST", url, what, headers={"Content-Length": "0"}) as start:
            location = start.headers.get("Location")
            if start.status_code != 202 or not location:
                raise self._error(start, what, f"upload of blob {digest}")
        url = _with_query(urllib.parse.urljoin(start.url, location), digest=digest)
        with self._request(
            "PUT",
            url,
            what,
            body=data,
            label=f"push {digest[7:19]}",
            headers={"Content-Type": "application/octet-stream"},
        ) as done:
            if done.status_code != 201:
                raise self._error(done, what, f"blob {digest}")

    def put_manifest(self, ref: Reference, body: bytes, media_type: str) -> None:
        """Store `body` byte for byte under `ref`'s tag."""
        what = str(ref)
        url = self._url(ref, "manifests", ref.manifest_key)
        with self._request("PUT", url, what, headers={"Content-Type": media_type}, body=body) as response:
            if response.status_code != 201:
                raise self._error(response, what, f"manifest of type {media_type}")
        echoed, digest = response.headers.get("Docker-Content-Digest", ""), digest_of(body)
        if DIGEST_RE.fullmatch(echoed) and echoed != digest:
            raise DigestMismatch(what, f"registry stored the manifest as {echoed}, not {digest}")

    def _url(self, ref: Reference, kind: str, key: str) -> str:
        return f"{self._base}{ref.repository}/{kind}/{key}"

    def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        label: str = "",
    ) -> requests.Response:
        """Send with authentication, retrying connection failures and transient statuses.

        The response is streamed: the caller reads what it needs and closes it.
        """
        send = functools.partial(self._send, method, url, headers or {}, body, label)
        delay, attempt = self._retry.backoff, 1
        while True:
            try:
                response = self._authorized(send, what)
            except requests.exceptions.SSLError as exc:
                raise Unreachable(
                    what, f"TLS failed ({_reason(exc)}); use --insecure for a plain-HTTP registry"
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self._retry.attempts:
                    reason = f"registry {self.registry} unreachable ({_reason(exc)})"
                    raise Unreachable(what, reason) from None
            else:
                if response.status_code not in TRANSIENT or attempt >= self._retry.attempts:
                    return response
                response.close()
            time.sleep(delay)
            delay, attempt = delay * 2, attempt + 1

    def _authorized(self, send: Callable[[], requests.Response], what: str) -> requests.Response:
        """Send once; on a 401 answer the challenge (Basic or Bearer) and send again."""
        response = send()
        if response.status_code != 401:
            return response
        authorization = self._answer(response.headers.get("WWW-Authenticate", ""), what)
        if authorization is None:
            return response
        response.close()
        self._authorization = authorization
        return send()

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        label: str,
    ) -> requests.Response:
        """One request, with the current Authorization header and upload progress."""
        if self._authorization:
            headers = {**headers, "Authorization": self._authorization}
        data: bytes | _Upload | None = body
        if body is not None and label:
            data = _Upload(body, Progress(label, len(body), self._progress))
        return self._session.request(method, url, headers=headers, data=data, stream=True, timeout=self._timeout)

    def _answer(self, challenge: str, what: str) -> str | None:
        """The Authorization header answering a WWW-Authenticate challenge, if we can."""
        scheme = challenge.split(" ", 1)[0].lower()
        credentials = self._credentials
        if credentials is not None and credentials.is_token:
            return f"Bearer {credentials.secret}"
        basic = None
        if credentials is not None:
            pair = f"{credentials.username}:{credentials.secret}".encode()
            basic = "Basic " + base64.b64encode(pair).decode()
        if scheme != "bearer":
            return basic if scheme == "basic" else None
        header = oras.auth.utils.parse_auth_header(challenge)
        if header.realm is None:
            return None
        token = self._token(header, basic, what)
        return f"Bearer {token}" if token else None

    def _token(self, challenge: oras.auth.utils.authHeader, basic: str | None, what: str) -> str | None:
        """A bearer token from the challenge's realm, for `basic` credentials or anonymous.

        The realm is the registry's choice, so its answer is read only up to TOKEN_ANSWER.
        """
        params = {key: value for key, value in (("service", challenge.service), ("scope", challenge.scope)) if value}
        headers = {"Accept": "application/json", **({"Authorization": basic} if basic else {})}
        realm = str(challenge.realm)
        with self._session.get(realm, params=params, headers=headers, stream=True, timeout=self._timeout) as answer:
            if answer.status_code != 200:
                return None
            body = _read_capped(answer, TOKEN_ANSWER, what, "token answer")
        try:
            fields = decode_json_object(body)
        except ValueError:
            return None
        token = fields.get("token") or fields.get("access_token")
        return token if isinstance(token, str) and token else None

    def _error(self, response: requests.Response, what: str, subject: str) -> RegistryError:
        """The error for an unexpected status, naming `subject` and the registry's reason."""
        status, detail = response.status_code, _registry_message(response)
        response.close()
        if status == 401:
            why = "credentials rejected" if self._credentials else "authentication required"
            return AuthenticationRequired(what, f"{why} (401 Unauthorized)")
        if status == 403:
            return AccessDenied(what, "access denied (403 Forbidden)")
        if status == 404:
            return NotFound(what, f"{subject} not found (404 Not Found)")
        if status == 415 or "media type" in detail.lower():
            return UnsupportedMediaType(what, f"registry refused {subject}: {detail or status}")
        suffix = f": {detail}" if detail else ""
        return RegistryError(what, f"{subject}: registry answered {status} {response.reason}{suffix}")
