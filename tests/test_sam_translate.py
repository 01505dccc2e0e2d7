"""template.yaml passes the SAM translator (what `sam validate` and `sam deploy` run) for every
value of every parameter that changes its shape, and is private by default."""

from __future__ import annotations

import pytest
from samtranslator.model.exceptions import InvalidDocumentException

from tests.sam_template import (
    cfn_template,
    condition_values,
    env_names,
    parameter_sets,
    resolve,
    shape_parameters,
    translate,
    translated,
)

TEMPLATE = cfn_template()


def test_shape_parameters_are_enumerable():
    shapes = shape_parameters(TEMPLATE)
    assert shapes["ApiAuth"] == ["NONE", "IAM", "JWT"]


@pytest.mark.parametrize(
    "parameters", parameter_sets(TEMPLATE), ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_template_translates(parameters):
    out = translated(**parameters)
    types = {r["Type"] for r in out["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    assert {"AWS::Lambda::Function", "AWS::IAM::Role", "AWS::ApiGatewayV2::Route"} <= types


def test_a_parameter_chosen_default_authorizer_is_what_the_translator_rejects():
    # The bug this test exists for: SAM resolves HttpApi Auth while transforming, before
    # conditions exist, so `!If` there fails `sam validate` although cfn-lint passes.
    broken = cfn_template()
    broken["Resources"]["BrokenApi"] = {
        "Type": "AWS::Serverless::HttpApi",
        "Properties": {
            "Auth": {
                "EnableIamAuthorizer": True,
                "DefaultAuthorizer": {"Fn::If": ["UseIam", "AWS_IAM", {"Ref": "AWS::NoValue"}]},
            }
        },
    }
    with pytest.raises(InvalidDocumentException, match="DefaultAuthorizer' should be a string"):
        translate(broken, {"ApiAuth": "IAM"})


@pytest.mark.parametrize(
    ("auth", "route_auth", "env_auth"),
    [("NONE", "NONE", "none"), ("IAM", "AWS_IAM", "iam"), ("JWT", "JWT", "jwt")],
)
def test_each_auth_mode_reaches_the_route_and_the_function(auth, route_auth, env_auth):
    params = {"ApiAuth": auth} | (
        {"JwtIssuer": "https://issuer.example.com", "JwtAudience": "c"} if auth == "JWT" else {}
    )
    out = translated(**params)
    conditions = condition_values(TEMPLATE, params)
    names = {**env_names(), "ApiAuth": auth, "HttpApi": "api-id", "ApiIntegration": "integ-id"}
    names["JwtAuthorizer"] = "jwt-authorizer-id"
    route = resolve(out["Resources"]["ApiRoute"]["Properties"], names, conditions)
    assert route["AuthorizationType"] == route_auth
    assert ("AuthorizerId" in route) == (auth == "JWT")
    authorizer = out["Resources"]["JwtAuthorizer"]
    assert authorizer["Condition"] == "UseJwt" and conditions["UseJwt"] == (auth == "JWT")
    env = resolve(
        out["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"],
        names,
        conditions,
    )
    assert env["LMREC_AUTH"] == env_auth
    assert env["LMREC_JWT_USER_CLAIM"] == "sub"
    assert env["LMREC_JWT_SERVICE_SCOPE"] == "lmrec/any-user"


def test_private_by_default():
    params = TEMPLATE["Parameters"]
    assert params["ApiAuth"]["Default"] in ("IAM", "JWT")
    assert "NONE" in params["ApiAuth"]["AllowedValues"]  # kept for development only
    # JWT without an issuer is refused at deploy time, not discovered at the first request
    rule = TEMPLATE["Rules"]["JwtNeedsIssuer"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "JWT"]}
