"""template.yaml points at things that exist, and its IAM is least-privilege."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import EVENTS_DIR, REPO, load_template

# Actions that AWS does not scope by resource: "*" is the only valid Resource for them.
UNSCOPED_ACTIONS = {
    "sagemaker:ListTrainingJobs",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
}


def resources(kind: str) -> dict:
    return {k: v for k, v in load_template()["Resources"].items() if v["Type"] == kind}


def test_functions_resolve_to_handlers():
    functions = resources("AWS::Serverless::Function")
    assert set(functions) == {"ApiFunction", "RetrainFunction", "PromoteFunction", "ItemsFunction"}
    for props in (f["Properties"] for f in functions.values()):
        module, func = props["Handler"].rsplit(".", 1)
        path = REPO / props["CodeUri"] / f"{module}.py"
        assert path.is_file(), path
        tree = path.read_text()
        assert f"def {func}(" in tree, f"{path} has no {func}()"


def test_layers_have_content():
    layers = resources("AWS::Serverless::LayerVersion")
    assert (REPO / layers["DepsLayer"]["Properties"]["ContentUri"] / "requirements.txt").is_file()
    core = REPO / layers["CoreLayer"]["Properties"]["ContentUri"]
    assert (core / "lmrec" / "__init__.py").is_file()
    assert importlib.util.find_spec("lmrec").origin.startswith(str(core))


def test_sam_builds_layers_through_build_py():
    # `sam build` with a runtime BuildMethod ships sources only, which Lambda compiles on every
    # cold start: each layer is built by its Makefile, which runs layers/build.py.
    for name, layer in resources("AWS::Serverless::LayerVersion").items():
        assert layer["Metadata"]["BuildMethod"] == "makefile", name
        makefile = (REPO / layer["Properties"]["ContentUri"] / "Makefile").read_text()
        assert f"build-{name}:" in makefile
        assert "../build.py" in makefile and '--dest "$(ARTIFACTS_DIR)"' in makefile


def test_every_sample_event_is_valid_and_belongs_to_a_function():
    prefixes = {
        "api_": "ApiFunction",
        "retrain_": "RetrainFunction",
        "promote_": "PromoteFunction",
        "items_": "ItemsFunction",
    }
    functions = resources("AWS::Serverless::Function")
    samples = [p for p in EVENTS_DIR.glob("*.json") if p.name != "local-env.json"]
    assert len(samples) >= 12
    for path in samples:
        json.loads(path.read_text())
        owner = next(v for k, v in prefixes.items() if path.name.startswith(k))
        assert owner in functions


def statements():
    for name, res in load_template()["Resources"].items():
        props = res.get("Properties", {})
        for policy in props.get("Policies", []):
            doc = policy.get("PolicyDocument", policy)
            for st in doc.get("Statement", []):
                yield name, st
        if res["Type"] == "AWS::S3::BucketPolicy":
            for st in props["PolicyDocument"]["Statement"]:
                yield name, st


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_least_privilege():
    seen = 0
    for name, st in statements():
        seen += 1
        actions = as_list(st["Action"])
        if st["Effect"] == "Deny":
            continue  # the TLS-only deny covers every action on purpose
        assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
        if "*" in as_list(st["Resource"]):
            assert set(actions) <= UNSCOPED_ACTIONS, (name, actions)
        if "iam:PassRole" in actions:
            assert st["Resource"] == {"!GetAtt": "SageMakerRole.Arn"}
            assert (
                st["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"
            )
    assert seen >= 12


def test_bucket_and_table_hardening():
    t = load_template()["Resources"]
    bucket = t["DataBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"]
    table = t["UserStoreTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_operations_hardening():
    t = load_template()
    res, params = t["Resources"], t["Parameters"]
    # every function logs to its own group with a retention; the API stage has access logs
    for name, fn in resources("AWS::Serverless::Function").items():
        group = res[fn["Properties"]["LoggingConfig"]["LogGroup"]["!Ref"]]
        assert group["Properties"]["RetentionInDays"] == {"!Ref": "LogRetentionDays"}, name
    stage = res["ApiStage"]["Properties"]
    assert stage["AccessLogSettings"]["DestinationArn"] == {"!GetAtt": "ApiAccessLogGroup.Arn"}
    assert "$context.status" in stage["AccessLogSettings"]["Format"]
    # the event-driven functions keep what they could not handle
    for name in ("RetrainFunction", "PromoteFunction"):
        on_failure = res[name]["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure == {"Type": "SQS", "Destination": {"!GetAtt": "FailedEventsQueue.Arn"}}
    # stored data outlives the stack
    for name in ("DataBucket", "UserStoreTable"):
        assert res[name]["DeletionPolicy"] == res[name]["UpdateReplacePolicy"] == "Retain"
    # noncurrent versions and training outputs expire after stated, configurable periods
    rules = {r["Id"]: r for r in res["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    noncurrent = rules["NoncurrentVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"]
    assert noncurrent == {"!Ref": "NoncurrentVersionDays"}
    assert params["NoncurrentVersionDays"]["Default"] == 7
    assert rules["TrainingOutputs"]["Prefix"] == "training-output/"
    assert rules["TrainingOutputs"]["ExpirationInDays"] == {"!Ref": "TrainingOutputDays"}
    assert params["TrainingOutputDays"]["Default"] == 30


def test_the_training_runtime_parameter_refuses_what_the_retrain_settings_refuse():
    """One bound, stated twice (CloudFormation checks the parameter at deploy time, the
    function's settings at start): a job's own budget is at least 480 s (training/plan.py)."""
    from annotated_types import Ge
    from lmrec.settings import RetrainSettings

    field = RetrainSettings.model_fields["max_runtime_seconds"]
    ge = next(m.ge for m in field.metadata if isinstance(m, Ge))
    param = load_template()["Parameters"]["TrainingMaxRuntimeSeconds"]
    assert param["MinValue"] == ge == 900
    assert param["Default"] == field.default
