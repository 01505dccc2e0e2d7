"""Lambda entry for the recommendation API: FastAPI behind Mangum, numpy only.

The model loads here, at import (once per container, the cold start), not in an ASGI
lifespan: Mangum would run a lifespan on every invocation. Later requests re-read the
production pointer every LMREC_REFRESH_SECONDS and swap in a new version once it verifies.
"""

from __future__ import annotations

import gc

# The cold start allocates ~100k long-lived objects (framework imports, the model's lookup
# tables) and creates no garbage worth collecting: the cyclic collector's passes over that
# growing heap are pure cost here. It is switched back on below, after a freeze.
gc.disable()

import time  # noqa: E402

from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.logging import correlation_paths  # noqa: E402
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit  # noqa: E402
from lmrec import aws  # noqa: E402
from lmrec.serving import ModelState  # noqa: E402
from lmrec.settings import get_settings  # noqa: E402

settings = get_settings()
aws.configure(settings)  # every AWS client below fits the function's 10 s
logger = Logger(service="lmrec-api")
metrics = Metrics(namespace=settings.metrics_namespace, service="lmrec-api")
# lmrec's own modules log through the standard library: give them the same JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"lmrec"})

state = ModelState(settings)
# The model loads while the web framework imports: loading mostly waits on S3 and imports
# mostly compute, so a cold start pays for the longer of the two instead of their sum.
# A failure is recorded in state.problem; routes answer 503 until a model loads.
loading = state.start_refresh()

from lmrec.api import create_app  # noqa: E402  (after the load has started, on purpose)
from mangum import Mangum  # noqa: E402

app = create_app(settings, state)
_asgi = Mangum(app, lifespan="off")
# Bounded: an S3 that accepts and never answers must not hold init (and every request
# queued behind it) for minutes. Past the bound the routes answer 503 at once, the load goes
# on while the container is warm, and a later request starts another if it failed.
loading.join(settings.init_load_seconds)
# What exists now lives as long as the container: move it out of the collector's sight, so
# later collections (during requests) walk only what requests allocate.
gc.freeze()
gc.enable()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    began = time.perf_counter()
    response = _asgi(event, context)
    metrics.add_metric(
        name="LatencyMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - began) * 1000
    )
    metrics.add_metadata(key="model_version", value=state.version or "none")
    if response.get("statusCode", 500) >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    return response
