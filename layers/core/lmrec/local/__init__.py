"""lmrec on one machine: the embedded local stack (moto plays S3, DynamoDB and SageMaker),
the `make demo` story, and the operator commands `lmrec serve | publish | rollback | demo`.

Developer tooling, not serving runtime: layers/build.py leaves this package out of the core
Lambda layer, and it may use the dev extra (moto, uvicorn, httpx). It imports no torch and
nothing from training/: the `lmrec` command (lmrec.local.cli) hands its training commands to
`python -m training`, and the training job runs as a subprocess, as SageMaker would.
"""
