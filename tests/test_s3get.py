"""The stdlib S3 reader: signatures match botocore's, and lmrec.store reads through it."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from lmrec import s3get, store


@pytest.mark.parametrize("token", [None, "session-token/with+chars="])
@pytest.mark.parametrize(
    "key", ["models/lmrec/v1/manifest.json", "odd keys/ä ö/file name+1.npy", "a~b/c=d"]
)
def test_signature_matches_botocore(token, key):
    creds = s3get.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    reader = s3get.Reader(creds, "eu-west-1", "http://127.0.0.1:9000")
    scheme, host, path = reader.url("my-bucket", key)
    # botocore signs first and picks the time; ours signs the same request at that time.
    request = AWSRequest(method="GET", url=f"{scheme}://{host}{path}")
    boto_creds = BotoCredentials(creds.access_key, creds.secret_key, token)
    S3SigV4Auth(boto_creds, "s3", "eu-west-1").add_auth(request)
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = s3get.sign(creds, "eu-west-1", host, path, when)
    assert request.headers["X-Amz-Content-SHA256"] == ours["x-amz-content-sha256"]
    assert request.headers["Authorization"] == ours["authorization"]


@pytest.mark.parametrize("key", ["plain/key.json", "odd keys/ä ö/file name+1.npy", "a~b/c=d&e"])
def test_object_paths_match_botocore(key):
    # botocore signs the path it is given; what must match is how it builds that path.
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(s3={"addressing_style": "path"}),
    )
    url = client.generate_presigned_url("get_object", {"Bucket": "my-bucket", "Key": key})
    reader = s3get.Reader(s3get.Credentials("a", "b"), "us-east-1", "http://127.0.0.1:9000")
    assert url.split("?")[0] == "{}://{}{}".format(*reader.url("my-bucket", key))


def test_urls_for_aws_and_local_endpoints():
    creds = s3get.Credentials("a", "b")
    aws = s3get.Reader(creds, "eu-west-1", None)
    host = "bucket-1.s3.eu-west-1.amazonaws.com"
    assert aws.url("bucket-1", "k/x y") == ("https", host, "/k/x%20y")
    # dotted names break the TLS wildcard: path-style instead
    assert aws.url("my.bucket", "k") == ("https", "s3.eu-west-1.amazonaws.com", "/my.bucket/k")
    china = s3get.Reader(creds, "cn-north-1", None)
    assert china.url("b-1", "k")[1] == "b-1.s3.cn-north-1.amazonaws.com.cn"
    local = s3get.Reader(creds, "us-east-1", "http://localhost:4566/")
    assert local.url("b", "k") == ("http", "localhost:4566", "/b/k")


def test_reader_from_env(monkeypatch):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL_S3",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    ):
        monkeypatch.delenv(name, raising=False)
    assert s3get.reader_from_env() is None  # botocore's chain: profiles, instance roles
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "t")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    reader = s3get.reader_from_env()
    assert reader.creds.token == "t" and reader.region == "eu-central-1"
    assert reader.endpoint == "http://127.0.0.1:1"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert s3get.reader_from_env().endpoint is None


def test_store_reads_without_botocore(s3_env, monkeypatch, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="fast")
    s3.put_object(Bucket="fast", Key="dir/a b.bin", Body=b"x" * 3_000_000)

    def no_botocore():
        raise AssertionError("the read path created a botocore client")

    monkeypatch.setattr(store, "s3_client", no_botocore)
    assert store.read_bytes("s3://fast/dir/a b.bin") == b"x" * 3_000_000
    dest = store.download("s3://fast/dir/a b.bin", tmp_path / "out.bin")
    assert dest.read_bytes() == b"x" * 3_000_000
    with pytest.raises(store.NotFound):
        store.read_bytes("s3://fast/dir/missing")
    with pytest.raises(store.NotFound):
        store.download("s3://fast/dir/missing", tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin.part").exists()


def test_store_falls_back_to_botocore_without_env_keys(s3_env, monkeypatch):
    boto3.client("s3").create_bucket(Bucket="slow")
    boto3.client("s3").put_object(Bucket="slow", Key="k", Body=b"v")
    client = store.s3_client()  # created while the keys are still in the environment
    monkeypatch.setattr(s3get, "reader_from_env", lambda: None)
    assert store.read_bytes("s3://slow/k") == b"v"
    assert store.s3_client() is client


def test_errors_other_than_not_found_fall_back_to_botocore(s3_env, monkeypatch):
    boto3.client("s3").create_bucket(Bucket="fallback")
    boto3.client("s3").put_object(Bucket="fallback", Key="k", Body=b"v")

    def forbidden(self, bucket, key):  # what S3 answers to, say, a region mismatch
        raise s3get.S3GetError("S3 answered 403 AccessDenied", 403, "AccessDenied")

    monkeypatch.setattr(s3get.Reader, "open", forbidden)
    assert store.read_bytes("s3://fallback/k") == b"v"


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:bad-port", "http://127.0.0.1:9"])
def test_unreachable_or_malformed_endpoint_is_an_s3_get_error(endpoint):
    reader = s3get.Reader(s3get.Credentials("a", "b"), "us-east-1", endpoint, timeout=2)
    with pytest.raises(s3get.S3GetError, match="cannot reach"):
        reader.open("bucket", "key")
