"""Fuzz the API: schema-driven cases, then malformed bodies and paths; counts statuses.

Positive and negative cases against every operation from its own OpenAPI schema
(schemathesis + hypothesis); then bodies that are not JSON text (random bytes,
invalid UTF-8, deep nesting, 5,000-digit numbers, lone surrogates, UTF-16) and paths whose
bytes are not UTF-8, which the schema cannot express. Counts responses by phase, status and
class; fails on any 5xx, and on any 400 (every malformed body must get the validation 422;
400 is only for a Content-Length that cannot be true, which this client never sends).
Runs in process against the ASGI app, with a real user store (DynamoDB) on a local moto server.

    .venv/bin/python benchmarks/fuzz_api.py --bundle runs/bench-quality/ml-100k --examples 1200
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import quote_from_bytes

VALID_BODIES = {
    "/v1/recommendations": b'{"user_id": "1", "history": ["50", "172"], "k": 5}',
    "/v1/events": b'{"events": [{"user_id": "fuzz", "item_id": "50"}]}',
}


def malformed_bodies():
    """Bytes that are not a JSON document the schema describes, in the ways a schema-driven
    generator never tries."""
    from hypothesis import strategies as st

    valid = st.sampled_from(sorted(VALID_BODIES.values()))

    def corrupt(body: bytes, at: int, byte: int) -> bytes:  # one byte outside ASCII
        i = at % len(body)
        return body[:i] + bytes([byte]) + body[i + 1 :]

    def nested(depth: int, opener: bytes) -> bytes:
        closer = b"]" if opener == b"[" else b"}"
        return opener * depth + (b"1" if opener != b"[" else b"") + closer * depth

    return st.one_of(
        st.binary(max_size=512),
        st.builds(corrupt, valid, st.integers(0, 10**6), st.integers(0x80, 0xFF)),
        st.builds(nested, st.integers(1, 200_000), st.sampled_from([b"[", b'{"a":'])),
        st.builds(lambda n: b'{"user_id": "1", "k": ' + b"9" * n + b"}", st.integers(10, 20_000)),
        st.builds(lambda cp: b'{"user_id": "\\u%04x"}' % cp, st.integers(0xD800, 0xDFFF)),
        st.builds(
            lambda body, enc: body.decode().encode(enc),
            valid,
            st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-8-sig", "latin-1"]),
        ),
        st.sampled_from([b'{"user_id": "1", "k": NaN}', b"", b"null", b'"x"', b"[]", b"{}"]),
    )


def undecodable_paths():
    """/v1/users/<bytes>/... with the bytes percent-encoded: 422 unless they are UTF-8."""
    from hypothesis import strategies as st

    templates = ["/v1/users/{}/recommendations", "/v1/items/{}/similar", "/v1/users/{}"]
    return st.tuples(st.sampled_from(templates), st.binary(min_size=1, max_size=8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--examples", type=int, default=1200, help="total requests, at least")
    parser.add_argument(
        "--malformed-share",
        type=float,
        default=0.2,
        help="share of the examples spent on malformed bodies and paths (default 0.2)",
    )
    args = parser.parse_args()

    import schemathesis
    from hypothesis import HealthCheck, Verbosity, given, settings
    from hypothesis.errors import Unsatisfiable
    from lmrec import registry
    from lmrec.api import create_app
    from lmrec.local.stack import create_user_store_table, free_port
    from lmrec.serving import ModelState
    from lmrec.settings import Settings
    from moto.server import ThreadedMotoServer
    from schemathesis import GenerationMode

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    create_user_store_table("fuzz-users")
    root = f"file://{tempfile.mkdtemp()}"
    registry.set_production(root, "lmrec", registry.publish(Path(args.bundle), root, "lmrec"))
    cfg = Settings(store_uri=root, user_store="dynamodb://fuzz-users")
    state = ModelState(cfg)
    state.refresh()
    app = create_app(cfg, state)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    statuses: collections.Counter = collections.Counter()  # (phase, label, status) -> n
    failures: list[str] = []
    operations = list(schema.get_all_operations())
    malformed = int(args.examples * args.malformed_share)
    per_op = max(1, (args.examples - malformed) // (2 * len(operations)) + 1)

    def record(phase: str, label: str, status: int, text: str, sent: object) -> None:
        statuses[(phase, label, status)] += 1
        if status >= 500 or status == 400:
            failures.append(f"{phase} {label}: {status} {text[:200]} <- {sent!r:.200}")

    def runner(op, mode):
        @settings(
            max_examples=per_op,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,  # stdout holds the JSON alone
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call()
            record("schema", op.label, response.status_code, response.text, case.body)

        return run

    rounds = 0
    # Some operations offer few distinct cases (GET /health has no invalid input), so one
    # round sends fewer requests than asked: new rounds (fresh random cases) until enough.
    while sum(statuses.values()) < args.examples - malformed and rounds < 6:
        rounds += 1
        for result in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                with contextlib.suppress(Unsatisfiable):  # e.g. no invalid input for /health
                    runner(result.ok(), mode)()

    from starlette.testclient import TestClient

    client = TestClient(app, raise_server_exceptions=False)
    quiet = settings(
        max_examples=max(1, malformed * 4 // 5 // len(VALID_BODIES)),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )

    def body_sender(path: str):
        @quiet
        @given(body=malformed_bodies())
        def send_body(body: bytes) -> None:
            headers = {"content-type": "application/json"}
            response = client.post(path, content=body, headers=headers)
            record("malformed body", f"POST {path}", response.status_code, response.text, body)

        return send_body

    for path in VALID_BODIES:
        body_sender(path)()

    @settings(
        max_examples=max(1, malformed // 5),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(drawn=undecodable_paths())
    def send_path(drawn) -> None:
        template, raw = drawn
        path = template.format(quote_from_bytes(raw, safe=""))
        method = "DELETE" if template == "/v1/users/{}" else "GET"
        response = client.request(method, path)
        try:
            raw.decode("utf-8")
            text = True
        except UnicodeDecodeError:
            text = False
        if not text and response.status_code != 422:
            failures.append(f"undecodable path {path}: {response.status_code}")
        record("malformed path", f"{method} {template}", response.status_code, response.text, path)

    send_path()
    server.stop()
    print(json.dumps(summary(statuses, failures, rounds, len(operations)), indent=1))
    if failures:
        raise SystemExit(1)


def summary(statuses: collections.Counter, failures: list[str], rounds: int, n_ops: int) -> dict:
    by_phase: dict = {}
    by_class: collections.Counter = collections.Counter()
    for (phase, _, status), n in statuses.items():
        by_phase.setdefault(phase, collections.Counter())[str(status)] += n
        by_class[f"{status // 100}xx"] += n
    return {
        "requests": sum(statuses.values()),
        "rounds": rounds,
        "operations": n_ops,
        "by_class": dict(sorted(by_class.items())),
        "by_phase": {k: dict(sorted(v.items())) for k, v in by_phase.items()},
        "5xx": sum(n for (_, _, s), n in statuses.items() if s >= 500),
        "400": sum(n for (_, _, s), n in statuses.items() if s == 400),
        "failures": failures[:20],
    }


if __name__ == "__main__":
    main()
