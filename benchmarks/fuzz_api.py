"""Fuzz the API from its own OpenAPI schema (schemathesis + hypothesis): positive and
negative cases against every operation; counts responses by status and fails on any 5xx.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--examples", type=int, default=1200, help="total requests, at least")
    args = parser.parse_args()

    import schemathesis
    from hypothesis import HealthCheck, given, settings
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

    statuses: collections.Counter = collections.Counter()
    failures: list[str] = []
    operations = list(schema.get_all_operations())
    per_op = max(1, args.examples // (2 * len(operations)) + 1)

    def runner(op, mode):
        @settings(
            max_examples=per_op,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call()
            statuses[(op.label, response.status_code)] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{op.label} {mode.name}: {response.status_code} "
                    f"{response.text[:200]} <- {case.body!r:.200}"
                )

        return run

    rounds = 0
    # Some operations offer few distinct cases (GET /health has no invalid input), so one
    # round sends fewer requests than asked: new rounds (fresh random cases) until enough.
    while sum(statuses.values()) < args.examples and rounds < 6:
        rounds += 1
        for result in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                with contextlib.suppress(Unsatisfiable):  # e.g. no invalid input for /health
                    runner(result.ok(), mode)()
    server.stop()
    total = sum(statuses.values())
    by_status = collections.Counter()
    for (_, status), n in statuses.items():
        by_status[str(status)] += n
    print(
        json.dumps(
            {
                "requests": total,
                "rounds": rounds,
                "operations": len(operations),
                "by_status": dict(sorted(by_status.items())),
                "5xx": len(failures),
                "failures": failures[:20],
            },
            indent=1,
        )
    )
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
