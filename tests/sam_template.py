"""template.yaml through the SAM translator, offline, as `sam validate` and `sam deploy` run it.

`sam validate` (samcli/lib/translate/sam_template_validator.py) parses the template with
CloudFormation's short tags expanded, replaces local CodeUri/ContentUri paths with S3 URIs,
and calls the translator with a managed-policy loader that asks IAM for policy ARNs. The
translator first looks those ARNs up in the map it bundles
(samtranslator/internal/data/aws_managed_policies.json) and calls the loader only for names
missing there; ours answers from that same bundled map, so no test needs the network.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account: the ARNs the tests' calls carry
PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}


def _loader() -> type[yaml.SafeLoader]:
    """A private SafeLoader subclass: samtranslator.yaml_helper.yaml_parse registers its tag
    constructor on yaml.SafeLoader itself, which would change every yaml.safe_load here."""
    from samtranslator.yaml_helper import intrinsics_multi_constructor

    class CfnLoader(yaml.SafeLoader):
        pass

    CfnLoader.add_multi_constructor("!", intrinsics_multi_constructor)
    return CfnLoader


def cfn_template(path: Path = TEMPLATE) -> dict:
    """The template with !Ref/!Sub/... as {"Ref": ...}/{"Fn::Sub": ...}, as CloudFormation
    sees it."""
    return yaml.load(path.read_text(), Loader=_loader())  # a SafeLoader subclass


def with_s3_code(template: dict) -> dict:
    """Local code paths replaced by S3 URIs, as `sam validate` does before translating."""
    out = copy.deepcopy(template)
    for res in out.get("Resources", {}).values():
        props = res.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://lmrec-sam-artifacts/{props[key]}"
    return out


class BundledManagedPolicies:
    """ManagedPolicyLoader without IAM: the ARNs the translator ships with."""

    def load(self) -> dict[str, str]:
        from samtranslator.internal.managed_policies import get_bundled_managed_policy_map

        return get_bundled_managed_policy_map("aws") or {}


def translate(template: dict, parameters: dict[str, Any]) -> dict:
    """The CloudFormation template the SAM transform produces for these parameter values.
    Raises samtranslator's InvalidDocumentException where `sam deploy` would fail."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # As samcli's SamTemplateValidator builds it; the session only names the region (the
    # translator reads the partition from it) and holds no credentials it would use.
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        plugins=[],
        boto_session=boto3.session.Session(region_name=REGION),
    )
    return translator.translate(
        sam_template=with_s3_code(template),
        parameter_values={**PSEUDO, **parameters},
        get_managed_policy_map=BundledManagedPolicies().load,
    )


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["Ref"]} if isinstance(value.get("Ref"), str) else set()
        return found.union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()


def shape_parameters(template: dict) -> dict[str, list[str]]:
    """Every parameter a Condition or Rule reads, with the values it may take: these change
    which resources and properties exist, so each value must pass the translator."""
    params = template.get("Parameters", {})
    used = _refs(template.get("Conditions", {})) | _refs(template.get("Rules", {}))
    shapes = {}
    for name in sorted(used & set(params)):
        allowed = params[name].get("AllowedValues")
        if allowed:
            shapes[name] = [str(v) for v in allowed]
        else:  # a free-form value: its default and one non-default stand for the rest
            shapes[name] = [str(params[name].get("Default", "")), "lmrec-example"]
    return shapes


def parameter_sets(template: dict) -> list[dict[str, str]]:
    """The cartesian product of shape_parameters (JWT sets also get an issuer/audience)."""
    shapes = shape_parameters(template)
    sets = []
    for values in itertools.product(*shapes.values()):
        chosen = dict(zip(shapes, values, strict=True))
        if chosen.get("ApiAuth") == "JWT":
            chosen.setdefault("JwtIssuer", "https://issuer.example.com")
            chosen.setdefault("JwtAudience", "lmrec-client")
        sets.append(chosen)
    return sets


@cache
def _translated_json(parameters_json: str) -> str:
    return json.dumps(translate(cfn_template(), json.loads(parameters_json)))


def translated(**parameters: str) -> dict:
    """translate(cfn_template(), parameters), computed once per parameter set per session."""
    return json.loads(_translated_json(json.dumps(parameters, sort_keys=True)))


def defaults(template: dict) -> dict[str, str]:
    return {
        name: str(p.get("Default", ""))
        for name, p in template.get("Parameters", {}).items()
        if "Default" in p
    }


def condition_values(template: dict, parameters: dict[str, str]) -> dict[str, bool]:
    values = {**defaults(template), **parameters, **PSEUDO}
    out: dict[str, bool] = {}
    for name, expr in template.get("Conditions", {}).items():
        out[name] = bool(resolve(expr, values, out))
    return out


def resolve(value: Any, names: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """Evaluate the intrinsics the template's IAM and routes use, with concrete names:
    Ref, Fn::Sub, Fn::GetAtt (looked up as "Logical.Attr"), Fn::If, Fn::Equals, Fn::Not,
    Fn::Join. Anything else raises, so an unfamiliar intrinsic is never silently kept."""
    if isinstance(value, list):
        return [r for r in (resolve(v, names, conditions) for v in value) if r is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return _NO_VALUE if arg == "AWS::NoValue" else _lookup(names, arg)
        if key == "Fn::GetAtt":
            return _lookup(names, ".".join(arg) if isinstance(arg, list) else arg)
        if key == "Fn::Sub":
            return _sub(arg, names, conditions)
        if key == "Fn::If":
            cond, then, other = arg
            return resolve(then if conditions[cond] else other, names, conditions)
        if key == "Fn::Equals":
            a, b = (resolve(v, names, conditions) for v in arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not resolve(arg[0], names, conditions)
        if key == "Fn::Join":
            sep, parts = arg
            return sep.join(str(p) for p in resolve(parts, names, conditions))
        if key.startswith("Fn::") or key == "Condition":
            raise ValueError(f"tests/sam_template.resolve does not evaluate {key}")
    out = {k: resolve(v, names, conditions) for k, v in value.items()}
    return {k: v for k, v in out.items() if v is not _NO_VALUE}


_NO_VALUE = object()


def _lookup(names: dict[str, Any], key: str) -> Any:
    try:
        return names[key]
    except KeyError:
        raise KeyError(f"no concrete value for {key!r} (add it to the names given)") from None


def _sub(arg: Any, names: dict[str, Any], conditions: dict[str, bool]) -> str:
    import re

    text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
    local = {**names, **{k: resolve(v, names, conditions) for k, v in extra.items()}}

    def one(match: re.Match) -> str:
        token = match.group(1)
        return "${" + token[1:] + "}" if token.startswith("!") else str(_lookup(local, token))

    return re.sub(r"\$\{([^}]+)\}", one, text)


@cache
def _template_defaults() -> dict[str, str]:
    return defaults(cfn_template())


def env_names(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Concrete values for the template's names, taken from the environment the functions
    run with (the template hands them the same names through these variables)."""
    env = dict(os.environ if environ is None else environ)
    bucket = env.get("LMREC_STORE_URI", "s3://lmrec-bucket").removeprefix("s3://").split("/")[0]
    store = env.get("LMREC_USER_STORE", "")
    dynamo = store.startswith("dynamodb://")
    table = store.removeprefix("dynamodb://") if dynamo else "lmrec-user-store"
    items = env.get("LMREC_ITEM_STORE", "").removeprefix("dynamodb://") or "lmrec-item-store"
    role_arn = env.get("LMREC_TRAINING_ROLE_ARN", f"arn:aws:iam::{ACCOUNT}:role/lmrec-sagemaker")
    names: dict[str, Any] = {**_template_defaults(), **PSEUDO}
    names.update(
        {
            "AWS::StackName": "lmrec",
            "AWS::URLSuffix": "amazonaws.com",
            "ModelName": env.get("LMREC_MODEL_NAME", "lmrec"),
            "JobPrefix": env.get("LMREC_JOB_PREFIX", "lmrec-"),
            "DataBucket": bucket,
            "DataBucket.Arn": f"arn:aws:s3:::{bucket}",
            "UserStoreTable": table,
            "UserStoreTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}",
            "ItemStoreTable": items,
            "ItemStoreTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{items}",
            "FailedEventsQueue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:lmrec-failed-events",
            "SageMakerRole": role_arn.rsplit("/", 1)[-1],
            "SageMakerRole.Arn": role_arn,
        }
    )
    return names
