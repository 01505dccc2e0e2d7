"""Load test: `lmrec serve` (uvicorn) on localhost, N concurrent clients for T seconds posting
recommendation requests with 50-item histories. Prints JSON (requests, errors, p50/p99).
Traffic goes to 127.0.0.1 only, and the loop is bounded in time.

With --switch-every S, production flips between two published versions of the bundle every
S seconds while the load runs (the server re-reads the pointer every second), and the reply
counts the versions that answered: a switch must cost no request.

    .venv/bin/python benchmarks/load_api.py --bundle runs/bench-quality/games --clients 50
    .venv/bin/python benchmarks/load_api.py --bundle B --clients 20 --seconds 30 --switch-every 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


async def client(http, url: str, bodies: list[str], deadline: float, out: dict, seed: int):
    rng = np.random.default_rng(seed)
    while time.perf_counter() < deadline:
        body = bodies[int(rng.integers(len(bodies)))]
        began = time.perf_counter()
        try:
            r = await http.post(url, content=body, headers={"content-type": "application/json"})
            kind = None if r.status_code == 200 else f"HTTP {r.status_code}"
            if kind is None:
                version = r.json()["model_version"]
                out["versions"][version] = out["versions"].get(version, 0) + 1
        except Exception as exc:  # a refused or broken connection is an error like a 5xx
            kind = type(exc).__name__
        out["latency_ms"].append((time.perf_counter() - began) * 1000)
        if kind:
            out["errors"] += 1
            out["error_kinds"][kind] = out["error_kinds"].get(kind, 0) + 1


async def run(url: str, bodies: list[str], clients: int, seconds: float) -> dict:
    import httpx

    out = {"latency_ms": [], "errors": 0, "error_kinds": {}, "versions": {}}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as http:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(http, url, bodies, deadline, out, i) for i in range(clients)))
    lat = np.asarray(out["latency_ms"])
    return {
        "requests": int(lat.size),
        "errors": out["errors"],
        "error_kinds": out["error_kinds"],
        "throughput_rps": round(lat.size / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "answered_by_version": out["versions"],
    }


def second_version(bundle: Path, workdir: Path) -> Path:
    """The same bundle under another model_version (the manifest is not checksummed)."""
    import shutil

    copy = workdir / "second"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model_version"] = manifest["model_version"] + "-b"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def keep_switching(root: str, pointers: list, every: float, stop, switches: list) -> None:
    """Flip production between the published versions until told to stop."""
    from lmrec import registry

    i = 0
    while not stop.wait(every):
        i += 1
        registry.set_production(root, "lmrec", pointers[i % len(pointers)])
        switches.append(round(time.perf_counter(), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--switch-every", type=float, default=0.0, help="flip production every S seconds"
    )
    args = parser.parse_args()
    from lmrec import registry
    from lmrec.local.stack import free_port
    from lmrec.recommend import Recommender

    workdir = Path(tempfile.mkdtemp())
    root = f"file://{workdir / 'store'}"
    first = registry.publish(Path(args.bundle), root, "lmrec")
    registry.set_production(root, "lmrec", first)
    pointers = [first]
    if args.switch_every > 0:
        pointers.append(registry.publish(second_version(Path(args.bundle), workdir), root, "lmrec"))
    ids = Recommender.load(args.bundle).bundle.item_ids
    rng = np.random.default_rng(0)
    bodies = [
        json.dumps({"history": list(rng.choice(ids, 50, replace=False)), "k": 10})
        for _ in range(500)
    ]
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("lmrec")),
            "serve",
            "--store",
            root,
            "--port",
            str(port),
        ],
        env={
            **os.environ,
            "LMREC_USER_STORE": "",
            "LMREC_REFRESH_SECONDS": "1",
            "LMREC_CACHE_DIR": str(workdir / "cache"),
        },
        cwd=REPO,
    )
    try:
        import httpx

        for _ in range(100):  # wait for the port, at most ~20 s
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not come up")
        import threading

        stop, switches = threading.Event(), []
        switcher = threading.Thread(
            target=keep_switching,
            args=(root, pointers, args.switch_every, stop, switches),
            daemon=True,
        )
        if args.switch_every > 0:
            switcher.start()
        result = asyncio.run(
            run(f"http://127.0.0.1:{port}/v1/recommendations", bodies, args.clients, args.seconds)
        )
        stop.set()
        result["production_switches"] = len(switches)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(
        json.dumps(
            {
                "clients": args.clients,
                "seconds": args.seconds,
                "server": "uvicorn, 1 worker",
                "machine_cores": os.cpu_count(),
                **result,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
