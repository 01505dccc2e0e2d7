"""The cached AWS clients follow AWS_ENDPOINT_URL: a client made for one endpoint is never
used for another (a poll thread left from an earlier local server once cached a client for
AWS itself, and the next test's item store went to dynamodb.us-east-1.amazonaws.com)."""

from __future__ import annotations

import lmrec.aws
import lmrec.events
import lmrec.store
import pytest


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    monkeypatch.setattr(lmrec.aws, "_clients", {})
    return monkeypatch


@pytest.mark.parametrize(
    ("make", "aws"),
    [(lmrec.events._client, "https://dynamodb."), (lmrec.store.s3_client, "https://s3.")],
)
def test_a_client_is_cached_per_endpoint_and_made_anew_when_it_changes(env, make, aws):
    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    local = make()
    assert make() is local and local.meta.endpoint_url == "http://127.0.0.1:1"
    env.delenv("AWS_ENDPOINT_URL")  # the endpoint a leftover thread saw between two tests
    remote = make()
    assert remote is not local and remote.meta.endpoint_url.startswith(aws)
    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")  # the next server
    assert make().meta.endpoint_url == "http://127.0.0.1:2"


@pytest.mark.parametrize("make", [lmrec.events._client, lmrec.store.s3_client])
def test_the_client_is_made_for_the_endpoint_it_is_cached_under(env, make):
    # GIVEN the endpoint unset by another thread (a test's teardown) just after the cache
    # read it, while the client is being made
    import lmrec.aws

    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    config = lmrec.aws.client_config

    def unset_then_config(*args, **kwargs):
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        return config(*args, **kwargs)

    env.setattr(lmrec.aws, "client_config", unset_then_config)
    # WHEN the client is made THEN it points where its cache key says, not at AWS
    assert make().meta.endpoint_url == "http://127.0.0.1:1"


def test_one_cache_serves_every_service_and_one_reset_clears_it(env):
    # GIVEN the S3 and DynamoDB clients made for a local endpoint
    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:3")  # a per-service override
    s3, dynamodb = lmrec.store.s3_client(), lmrec.events._client()
    # THEN each is cached under its own service and its own endpoint
    assert lmrec.aws.cached_client("s3") is s3 and lmrec.aws.cached_client("dynamodb") is dynamodb
    assert dynamodb.meta.endpoint_url == "http://127.0.0.1:3" == lmrec.aws.endpoint("dynamodb")
    assert s3.meta.endpoint_url == "http://127.0.0.1:1" == lmrec.store.s3_endpoint()
    # WHEN the local stack resets them (a new server, new credentials) THEN both are made anew
    lmrec.aws.reset_clients()
    assert lmrec.store.s3_client() is not s3 and lmrec.events._client() is not dynamodb
