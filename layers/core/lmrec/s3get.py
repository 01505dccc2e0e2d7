"""Signed S3 GETs with the standard library: the read path of a Lambda cold start.

Creating a botocore client costs about 0.1 s of CPU before the first byte moves (it loads
and parses the S3 service model and the endpoint rule set), and a cold start pays it before
the first answer. Loading a bundle needs nothing but GET Object, so when credentials are in
the environment (always so in Lambda, where the execution role's keys arrive as
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN) lmrec.store signs those GETs
itself with AWS Signature Version 4 over http.client. Everything else (listing, writing,
credentials from a profile or an instance role) goes through botocore.

tests/test_s3get.py checks each signature against botocore's own signer.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # a GET has no body
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # no dots: TLS wildcard fits
_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
TIMEOUT = "Timeout"  # S3GetError.code when S3 accepted the connection and did not answer


class S3GetError(Exception):
    """S3 answered something other than the object. `code` is S3's error code, if any."""

    def __init__(self, message: str, status: int = 0, code: str = ""):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(creds: Credentials, region: str, host: str, path: str, now: datetime) -> dict[str, str]:
    """The headers that authenticate `GET https://{host}{path}` (path already URI-encoded),
    by AWS Signature Version 4 for the s3 service."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    if creds.token:
        headers["x-amz-security-token"] = creds.token
    names = sorted(headers)
    canonical = "\n".join(
        [
            "GET",
            path,
            "",  # no query string
            "".join(f"{name}:{headers[name].strip()}\n" for name in names),
            ";".join(names),
            EMPTY_SHA256,
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + creds.secret_key).encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


@dataclass(frozen=True)
class Reader:
    creds: Credentials
    region: str
    endpoint: str | None  # AWS_ENDPOINT_URL(_S3): a local S3 such as a moto server
    timeout: float = 5.0  # per socket operation (lmrec.aws budget's read timeout)

    def url(self, bucket: str, key: str) -> tuple[str, str, str]:
        """(scheme, host[:port], path) for an object, path URI-encoded as SigV4 signs it."""
        key_path = quote(key, safe="/~")
        if self.endpoint:  # path-style, which every local S3 speaks
            parts = urlsplit(self.endpoint)
            prefix = parts.path.rstrip("/")
            return parts.scheme, parts.netloc, f"{prefix}/{quote(bucket)}/{key_path}"
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        if _DNS_BUCKET.match(bucket):
            return "https", f"{bucket}.s3.{self.region}.{suffix}", f"/{key_path}"
        return "https", f"s3.{self.region}.{suffix}", f"/{bucket}/{key_path}"

    def open(self, bucket: str, key: str) -> Body:
        """The object's body to read; raises S3GetError for any other answer or a network
        failure (refused, timed out, a malformed endpoint)."""
        scheme, host, path = self.url(bucket, key)
        conn_type = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = None
        try:
            conn = conn_type(host, timeout=self.timeout)
            conn.request("GET", path, headers=sign(self.creds, self.region, host, path, _now()))
            response = conn.getresponse()
            if response.status == 200:
                return Body(response, conn)
            body = response.read(4096)
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            code = TIMEOUT if isinstance(exc, TimeoutError) else ""
            raise S3GetError(f"cannot reach {scheme}://{host}: {exc}", 0, code) from None
        conn.close()
        match = _CODE.search(body)
        code = match.group(1).decode(errors="replace") if match else ""
        raise S3GetError(
            f"S3 answered {response.status} {code or response.reason}", response.status, code
        )


class Body:
    """An object's bytes as they arrive; closing it closes its connection (one GET each)."""

    def __init__(self, response: http.client.HTTPResponse, conn: http.client.HTTPConnection):
        self._response, self._conn = response, conn

    def read(self, n: int = -1) -> bytes:
        return self._response.read() if n < 0 else self._response.read(n)

    def close(self) -> None:
        self._response.close()
        self._conn.close()

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _now() -> datetime:
    return datetime.now(UTC)


def reader_from_env() -> Reader | None:
    """A Reader when keys are in the environment, else None (use botocore's chain)."""
    env = os.environ
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        endpoint = None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    from lmrec import aws

    b = aws.budget()
    return Reader(
        Credentials(access, secret, env.get("AWS_SESSION_TOKEN")),
        region,
        endpoint,
        max(b.connect_timeout, b.read_timeout),
    )
