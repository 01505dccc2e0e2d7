"""`make demo`: the whole lifecycle on this machine, with no AWS account.

Starts the embedded local stack, uploads the shipped MovieLens 100K sample, lets the retrain
function start a training job, runs it (CPU), lets the promote function gate and publish it,
serves the API on localhost and shows what it answers.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from lmrec.local.stack import REPO, LocalStack, free_port

SAMPLE = REPO / "training" / "sample_data" / "ml-100k"
# A short CPU budget so the demo finishes in minutes; the presets train longer.
DEMO_HP = {
    **json.loads((REPO / "training" / "presets" / "ml-100k.json").read_text()),
    "max_train_seconds": "60",
    "student_max_seconds": "35",
    "refit": "false",  # a measurement for the benchmark, not needed to serve
    "progress": "false",
}


def say(text: str = "") -> None:
    print(text, flush=True)


def show(title: str, reply: dict) -> None:
    say(f"\n{title}  (model {reply.get('model_version')}, {reply.get('strategy', 'similar')})")
    for item in reply["items"]:
        reason = item.get("reason") or {}
        because = f"  <- because: {reason.get('title')}" if reason else ""
        say(
            f"  {item['rank']:>2}. {item['attributes'].get('title', item['item_id'])}"
            f" [{', '.join(item['attributes'].get('genres') or [])}]{because}"
        )


def main(port: int = 8000, keep_serving: bool = True) -> int:
    import httpx
    import uvicorn

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the demo prints its own lines
    began = time.perf_counter()
    stack = LocalStack(REPO / "runs" / "demo", hyperparameters=DEMO_HP).start()
    say(f"local stack: moto server (S3, DynamoDB, SageMaker API) at {stack.endpoint}")
    stack.upload(SAMPLE / "interactions.csv.gz", "data/interactions/ml-100k.csv.gz")
    stack.upload(SAMPLE / "items.csv.gz", "data/items/ml-100k-items.csv.gz")
    say("uploaded MovieLens 100K to s3://lmrec-local/data/")
    decision = stack.retrain("retrain_s3_object_created.json")
    say(f"retrain function: {decision['action']} {decision.get('job_name')} ({decision['reason']})")
    if decision["action"] != "started":
        return 1
    say("running the training job locally (teacher, distilled student, baselines) ...")
    [promotion] = stack.run_pending_jobs(stream_output=True)
    say(
        f"promote function: {promotion['action']} {promotion.get('model_version')} "
        f"({promotion['reason']})"
    )
    if promotion["action"] != "promoted":
        return 1

    from lmrec.api import create_app
    from lmrec.serving import ModelState
    from lmrec.settings import Settings

    settings = Settings(
        store_uri=stack.store_uri, events_table=stack.table, cache_dir=str(stack.workdir / "cache")
    )
    state = ModelState(settings)
    state.refresh()
    port = port if _free(port) else free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, state),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_keep_alive=75,  # see `lmrec serve`
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)

    with httpx.Client(base_url=url, timeout=10) as http:
        for user in ("1", "42"):
            show(
                f"POST /v1/recommendations user {user}",
                http.post("/v1/recommendations", json={"user_id": user, "k": 5}).json(),
            )
        show("GET /v1/items/50/similar (Star Wars)", http.get("/v1/items/50/similar?k=5").json())
        watched = ["172", "181", "1"]  # Empire Strikes Back, Return of the Jedi, Toy Story
        say(f"\nPOST /v1/events: user new-fan watches {watched}")
        http.post(
            "/v1/events", json={"events": [{"user_id": "new-fan", "item_id": i} for i in watched]}
        ).raise_for_status()
        show(
            "POST /v1/recommendations user new-fan (after the events)",
            http.post("/v1/recommendations", json={"user_id": "new-fan", "k": 5}).json(),
        )
        show(
            "POST /v1/recommendations user never-seen (cold start)",
            http.post("/v1/recommendations", json={"user_id": "never-seen", "k": 3}).json(),
        )
    say(f"\nready in {time.perf_counter() - began:.0f} s.")
    say(f"API: {url}   docs: {url}/docs   health: {url}/health")
    say(f"report: {REPO / 'runs' / 'demo' / 'sagemaker'}/<job>/model/report.md")
    if keep_serving:
        say("Press Ctrl-C to stop the API and the local stack.")
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            say("stopping")
    server.should_exit = True
    thread.join(5)
    stack.stop()
    return 0


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
