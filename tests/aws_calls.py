"""Every AWS call a function makes during the tests, judged against its role in template.yaml.

Recording: each botocore client gets two event hooks (`provide-client-params` keeps the
call's parameters, `after-call` records service, operation, parameters and HTTP status);
lmrec.s3get's signed GETs bypass botocore and are recorded by wrapping Reader.open. Who
makes a call is whoever is acting (acting_as): tests/conftest.py tags sam_invoke and
import_function, and the local stack's retrain/promote/training-job runner.

Judging: the IAM requests each call needs (action, resource ARN, condition keys) are
evaluated (tests/iam_policy.py) against the role the SAM translator generates for that
function, its Ref/Sub/GetAtt resolved with the names the function ran with (bucket, table,
model name from its environment), plus the bucket policy's Deny statements.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.iam_policy import Decision, Request, evaluate
from tests.sam_template import (
    ACCOUNT,
    cfn_template,
    condition_values,
    env_names,
    resolve,
    translate,
    translated,
)

TRAINING = "SageMakerRole"  # the training job's role: who SageMaker acts as for it
FUNCTIONS = {
    "api": "ApiFunction",
    "retrain": "RetrainFunction",
    "promote": "PromoteFunction",
    "items": "ItemsFunction",
}


@dataclass
class Call:
    principal: str
    service: str
    operation: str
    params: dict[str, Any]
    status: int
    region: str
    env: dict[str, str] = field(repr=False, default_factory=dict)  # the LMREC_* it ran with

    @property
    def names(self) -> dict[str, Any]:
        return env_names(self.env)


_lock = threading.Lock()
_acting: list[str] = []  # a process-wide stack: the function's own threads act for it too
_calls: list[Call] | None = None
# A child process (the training container the local stack starts) appends its calls here,
# as JSON lines, when started with these variables (tests/aws_child/sitecustomize.py).
CHILD_FILE_ENV = "LMREC_TEST_AWS_CALLS_FILE"
CHILD_PRINCIPAL_ENV = "LMREC_TEST_AWS_PRINCIPAL"
CHILD_DIR = Path(__file__).resolve().parent / "aws_child"
_child_file: str | None = None


@contextmanager
def acting_as(principal: str) -> Iterator[None]:
    with _lock:
        _acting.append(principal)
    try:
        yield
    finally:
        with _lock:
            _acting.pop()


def acting(principal: str, fn: Callable, children: bool = False) -> Callable:
    """fn acting as principal; with children, the processes it starts act as it too."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = os.environ.get(CHILD_PRINCIPAL_ENV)
        if children:
            os.environ[CHILD_PRINCIPAL_ENV] = principal
        try:
            with acting_as(principal):
                return fn(*args, **kwargs)
        finally:
            if children:
                os.environ[CHILD_PRINCIPAL_ENV] = before or ""

    return wrapper


def _kept(params: dict) -> dict:
    """What judging needs from a call's parameters (no bodies, no item values)."""
    out = {
        k: v for k, v in params.items() if k not in ("Body", "Item", "ExpressionAttributeValues")
    }
    if "Key" in out and not isinstance(out["Key"], str):
        del out["Key"]  # a DynamoDB key (values), not an S3 object key
    if isinstance(out.get("RequestItems"), dict):
        out["RequestItems"] = {table: [] for table in out["RequestItems"]}
    return json.loads(json.dumps(out, default=str))


def _record(service: str, operation: str, params: dict, status: int, region: str) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("LMREC_")}
    if _child_file is not None:
        principal = os.environ.get(CHILD_PRINCIPAL_ENV)
        if principal:
            line = [principal, service, operation, _kept(params), status, region, env]
            with _lock, open(_child_file, "a") as fh:
                fh.write(json.dumps(line) + "\n")
        return
    with _lock:
        if _calls is None or not _acting:
            return
        principal = _acting[-1]
    call = Call(principal, service, operation, _kept(params), status, region, env)
    with _lock:
        _calls.append(call)


def child_calls(path: Path) -> list[Call]:
    if not path.exists():
        return []
    return [Call(*json.loads(line)) for line in path.read_text().splitlines() if line]


def _keep_params(params, model, context, **_):
    context["lmrec_api_params"] = dict(params)


def _after_call(http_response, model, context, **_):
    _record(
        model.service_model.signing_name,
        model.name,
        context.get("lmrec_api_params", {}),
        http_response.status_code,
        context.get("client_region") or "us-east-1",
    )


def install(monkeypatch) -> None:
    """Hook every botocore client created from now on, and lmrec's signed GETs."""
    from botocore.client import ClientCreator
    from lmrec import s3get

    create = ClientCreator.create_client

    def create_client(self, *args, **kwargs):
        client = create(self, *args, **kwargs)
        client.meta.events.register("provide-client-params", _keep_params)
        client.meta.events.register("after-call", _after_call)
        return client

    monkeypatch.setattr(ClientCreator, "create_client", create_client)
    open_ = s3get.Reader.open

    def open_recorded(self, bucket: str, key: str):
        try:
            body = open_(self, bucket, key)
        except s3get.S3GetError as exc:
            _record("s3", "GetObject", {"Bucket": bucket, "Key": key}, exc.status, "us-east-1")
            raise
        _record("s3", "GetObject", {"Bucket": bucket, "Key": key}, 200, "us-east-1")
        return body

    monkeypatch.setattr(s3get.Reader, "open", open_recorded)


def install_in_child() -> None:
    """In a child process started with CHILD_FILE_ENV: the same hooks, appending to it."""
    global _child_file
    _child_file = os.environ[CHILD_FILE_ENV]

    class Patch:  # monkeypatch's setattr, for a process that never undoes it
        @staticmethod
        def setattr(target, name, value):
            setattr(target, name, value)

    install(Patch)


@contextmanager
def recording() -> Iterator[list[Call]]:
    global _calls
    calls: list[Call] = []
    with _lock:
        _calls = calls
    try:
        yield calls
    finally:
        with _lock:
            _calls = None


# --- the IAM requests a call needs ------------------------------------------------------------


def _s3(call: Call) -> list[Request]:
    p, op = call.params, call.operation
    bucket = f"arn:aws:s3:::{p.get('Bucket', '')}"
    obj = f"{bucket}/{p.get('Key', '')}"
    if op in ("GetObject", "HeadObject"):
        action = "s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject"
        out = [Request(action, obj, why=f"{op} {p.get('Key')}")]
        if call.status == 404:
            # S3 tells a missing key (404) from a forbidden one only to a caller that may
            # list the bucket; without s3:ListBucket the same request is a 403 AccessDenied.
            out.append(
                Request(
                    "s3:ListBucket",
                    bucket,
                    why=f"{op} of the missing key {p.get('Key')} answers 404 only with "
                    "s3:ListBucket on the bucket (403 AccessDenied without it)",
                )
            )
        return out
    if op in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [Request("s3:PutObject", obj, why=f"{op} {p.get('Key')}")]
    if op == "CopyObject":
        src = p.get("CopySource")
        src = f"{src['Bucket']}/{src['Key']}" if isinstance(src, dict) else str(src)
        return [
            Request("s3:GetObject", f"arn:aws:s3:::{src.lstrip('/')}", why=f"CopyObject {src}"),
            Request("s3:PutObject", obj, why=f"CopyObject to {p.get('Key')}"),
        ]
    if op == "DeleteObject":
        action = "s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject"
        return [Request(action, obj, why=f"DeleteObject {p.get('Key')}")]
    if op == "DeleteObjects":
        keys = [o["Key"] for o in p.get("Delete", {}).get("Objects", [])]
        return [Request("s3:DeleteObject", f"{bucket}/{k}", why=f"DeleteObjects {k}") for k in keys]
    if op in ("ListObjectsV2", "ListObjects"):
        prefix = str(p.get("Prefix", ""))
        return [Request("s3:ListBucket", bucket, {"s3:prefix": prefix}, f"{op} {prefix!r}")]
    if op == "ListObjectVersions":
        prefix = str(p.get("Prefix", ""))
        return [Request("s3:ListBucketVersions", bucket, {"s3:prefix": prefix}, f"{op} {prefix}")]
    if op == "HeadBucket":
        return [Request("s3:ListBucket", bucket, why="HeadBucket")]
    return []


def _dynamodb(call: Call) -> list[Request]:
    p, op = call.params, call.operation
    base = f"arn:aws:dynamodb:{call.region}:{ACCOUNT}:table/"
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [Request(f"dynamodb:{op}", base + t, why=op) for t in p.get("RequestItems", {})]
    if op == "TransactWriteItems":
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
        kinds["ConditionCheck"] = "ConditionCheckItem"
        return [
            Request(f"dynamodb:{kinds[k]}", base + v["TableName"], why=f"{op} {k}")
            for item in p.get("TransactItems", [])
            for k, v in item.items()
        ]
    if "TableName" in p:
        table = base + p["TableName"]
        if p.get("IndexName"):
            table += f"/index/{p['IndexName']}"
        return [Request(f"dynamodb:{op}", table, why=op)]
    return []


def _sagemaker(call: Call) -> list[Request]:
    p, op = call.params, call.operation
    if op == "ListTrainingJobs":
        return [Request("sagemaker:ListTrainingJobs", "*", why=op)]
    if "TrainingJobName" not in p:
        return []
    job = f"arn:aws:sagemaker:{call.region}:{ACCOUNT}:training-job/{p['TrainingJobName'].lower()}"
    out = [Request(f"sagemaker:{op}", job, why=op)]
    if op == "CreateTrainingJob":
        if p.get("Tags"):
            out.append(Request("sagemaker:AddTags", job, why="CreateTrainingJob with Tags"))
        out.append(
            Request(
                "iam:PassRole",
                p["RoleArn"],
                {"iam:PassedToService": "sagemaker.amazonaws.com"},
                "CreateTrainingJob passes its RoleArn",
            )
        )
    return out


MAPPERS = {"s3": _s3, "dynamodb": _dynamodb, "sagemaker": _sagemaker}


def requests_for(call: Call) -> list[Request]:
    """What IAM checks for this call; raises for a call this module cannot map yet."""
    mapper = MAPPERS.get(call.service)
    found = mapper(call) if mapper else []
    if not found:
        raise LookupError(
            f"{call.principal} called {call.service}:{call.operation}: teach tests/aws_calls.py "
            "which IAM action and resource that needs"
        )
    return [
        Request(r.action, r.resource, {**r.context, "aws:SecureTransport": "true"}, r.why)
        for r in found
    ]


# --- the policies ---------------------------------------------------------------------------


def role_statements(
    principal: str, names: dict[str, Any], parameters: dict | None = None, template=None
):
    """The principal's identity-policy statements (translated, resolved) plus the bucket
    policy's Deny statements. ApiAuth does not change any role, so the default is used.
    `template`: another SAM template (dict) instead of template.yaml."""
    parameters = parameters or {}
    out = translate(template, parameters) if template else translated(**parameters)
    conditions = condition_values(template or cfn_template(), parameters)
    resources = out["Resources"]
    role_id = principal if principal == TRAINING else f"{principal}Role"
    if principal != TRAINING:
        role_ref = resources[principal]["Properties"]["Role"]
        role_id = role_ref["Fn::GetAtt"][0]
    statements = []
    for policy in resources[role_id]["Properties"].get("Policies", []):
        statements += _as_list(resolve(policy["PolicyDocument"]["Statement"], names, conditions))
    bucket_policy = resources["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statements += [
        st for st in _as_list(resolve(bucket_policy, names, conditions)) if st["Effect"] == "Deny"
    ]
    return statements


def _as_list(value):
    return value if isinstance(value, list) else [value]


def suggestion(principal: str, request: Request, names: dict[str, Any]) -> str:
    """The template.yaml statement that would allow `request`, written with the template's
    names instead of this test's concrete ones."""
    resource = request.resource
    bucket_arn, table_arn = names["DataBucket.Arn"], names["UserStoreTable.Arn"]
    if resource == bucket_arn:
        resource = "!GetAtt DataBucket.Arn"
    elif resource.startswith(bucket_arn + "/"):
        key = resource[len(bucket_arn) + 1 :]
        model_prefix = f"models/{names['ModelName']}/"
        if key.startswith(model_prefix):
            prefix = "models/${ModelName}/*"
        else:
            prefix = key.split("/", 1)[0] + "/*" if "/" in key else key
        resource = "!Sub ${DataBucket.Arn}/" + prefix
    elif resource.startswith(table_arn):
        resource = "!GetAtt UserStoreTable.Arn" + (" (index)" if "/index/" in resource else "")
    where = "SageMakerRole's PolicyDocument" if principal == TRAINING else f"{principal}'s Policies"
    lines = [
        f"add to {where} in template.yaml:",
        "  - Effect: Allow",
        f"    Action: [{request.action}]",
        f"    Resource: {resource}",
    ]
    conditioned = {k: v for k, v in request.context.items() if k != "aws:SecureTransport"}
    if conditioned:
        lines.append(f"    # request context: {conditioned}")
    return "\n".join(lines)


USED: set[tuple[str, str, str]] = set()  # (principal, Sid, action) allowed this session
# Used by SageMaker itself for the training job, which the local stack does not play: pulling
# the image, writing the job's logs and metrics, restoring checkpoints on a (spot) restart.
PLATFORM_ONLY = {
    (TRAINING, "PullImage"),
    (TRAINING, "EcrToken"),
    (TRAINING, "Logs"),
    (TRAINING, "Metrics"),
    (TRAINING, "WriteOutputAndCheckpoints"),
}
# Used by Lambda with the function's role: an event that failed after retries goes to the
# on-failure destination (template.yaml: EventInvokeConfig).
PLATFORM_ACTIONS = {"sqs:sendmessage"}


def unused_permissions() -> list[str]:
    """Allowed actions of each role that no judged call of this session needed."""
    out = []
    for principal in (*FUNCTIONS.values(), TRAINING):
        for st in role_statements(principal, env_names({})):
            if st["Effect"] != "Allow" or (principal, st.get("Sid")) in PLATFORM_ONLY:
                continue
            for action in _as_list(st["Action"]):
                if action.lower() in PLATFORM_ACTIONS:
                    continue
                if (principal, st.get("Sid", "(allow)"), action.lower()) not in USED:
                    out.append(f"{principal} {st.get('Sid', '(no Sid)')}: {action}")
    return out


@dataclass
class Verdict:
    call: Call
    request: Request
    decision: Decision


def judge(
    calls: list[Call], parameters: dict | None = None, template=None
) -> tuple[list[Verdict], list[str]]:
    """Every request of every call with its decision, and the failure texts: one per missing
    permission, with up to three of the calls that needed it."""
    verdicts: list[Verdict] = []
    missing: dict[tuple[str, str, str, str], list[str]] = {}
    unmapped: list[str] = []
    for call in calls:
        try:
            requests = requests_for(call)
        except LookupError as exc:
            unmapped.append(str(exc))
            continue
        statements = role_statements(call.principal, call.names, parameters, template)
        for request in requests:
            decision = evaluate(statements, request)
            verdicts.append(Verdict(call, request, decision))
            if decision.allowed:
                USED.add((call.principal, decision.statement, request.action.lower()))
                continue
            denied = f" (denied by {decision.statement})" if decision.statement else ""
            key = (
                call.principal,
                f"{request.action} on {request.resource}{denied}",
                suggestion(call.principal, request, call.names),
                "",
            )
            missing.setdefault(key, []).append(request.why)
    failures = list(dict.fromkeys(unmapped))
    for (principal, what, fix, _), whys in missing.items():
        whys = list(dict.fromkeys(whys))
        more = f" (and {len(whys) - 3} more)" if len(whys) > 3 else ""
        needed = "; ".join(whys[:3]) + more
        failures.append(f"{principal} needs {what}: {needed}\n{fix}")
    return verdicts, failures
