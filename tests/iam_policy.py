"""IAM policy evaluation for one request: explicit Deny wins, then any Allow, else denied.

Why a small evaluator here rather than a library (checked, November 2026):
- moto's IAM enforcement (moto.iam.access_control.IAMPolicy) evaluates only StringEquals
  conditions and silently ignores every other operator, so the StringLike `s3:prefix`
  condition on ListBucket would always pass; an Allow whose condition fails comes back as
  an explicit DENIED; patterns are turned into regexes unescaped and actions compared
  case-sensitively. It also has no notion of S3's "404 needs s3:ListBucket" rule.
- iam-ape computes an identity's effective permission sets from an account dump (no
  request context, no condition keys); policyuniverse expands and classifies actions;
  parliament and cloudsplaining lint policies. None answers "is this request allowed?".
So this module implements the documented evaluation logic
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html)
for what our policies use: Action/NotAction, Resource/NotResource with * and ? wildcards,
and the condition operators below; an operator it does not know raises instead of passing.
tests/test_iam.py checks these semantics on their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any


@dataclass(frozen=True)
class Request:
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    context: dict[str, str] = field(default_factory=dict)  # condition keys: "s3:prefix", ...
    why: str = ""  # what in the call needs it (for the failure message)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    statement: str  # the Sid that decided (or "" for the implicit deny)


@cache
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    body = re.escape(text).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{body}$", re.IGNORECASE if ignore_case else 0)


def wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _pattern(pattern, ignore_case).match(value) is not None


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _string_equals(want: list[str], got: str) -> bool:
    return got in want


def _string_like(want: list[str], got: str) -> bool:
    return any(wildcard(w, got) for w in want)


def _bool(want: list[str], got: str) -> bool:
    return got.lower() in [str(w).lower() for w in want]


OPERATORS = {
    "StringEquals": _string_equals,
    "StringLike": _string_like,
    "ArnEquals": _string_equals,
    "ArnLike": _string_like,
    "Bool": _bool,
    "StringNotEquals": lambda want, got: not _string_equals(want, got),
    "StringNotLike": lambda want, got: not _string_like(want, got),
}


def conditions_hold(condition: dict, context: dict[str, str]) -> bool:
    """Every operator and every key must hold. A key missing from the request makes the
    condition false (true for an ...IfExists operator)."""
    for operator, keys in condition.items():
        base = operator.removesuffix("IfExists")
        if base not in OPERATORS:
            raise ValueError(f"tests/iam_policy.py cannot evaluate condition operator {operator}")
        for key, want in keys.items():
            got = context.get(key)
            if got is None:
                if operator.endswith("IfExists"):
                    continue
                return False
            if not OPERATORS[base]([str(w) for w in _as_list(want)], got):
                return False
    return True


def statement_applies(statement: dict, request: Request) -> bool:
    if "Action" in statement:
        if not any(wildcard(a, request.action, True) for a in _as_list(statement["Action"])):
            return False
    elif any(wildcard(a, request.action, True) for a in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(wildcard(r, request.resource) for r in _as_list(statement["Resource"])):
            return False
    elif any(wildcard(r, request.resource) for r in _as_list(statement.get("NotResource", []))):
        return False
    return conditions_hold(statement.get("Condition", {}), request.context)


def evaluate(statements: list[dict], request: Request) -> Decision:
    """Identity-policy statements plus any resource-policy Deny statements, all resolved
    to concrete strings."""
    allowed_by = None
    for st in statements:
        if not statement_applies(st, request):
            continue
        if st["Effect"] == "Deny":
            return Decision(False, st.get("Sid", "(deny)"))
        allowed_by = allowed_by or st.get("Sid", "(allow)")
    return Decision(allowed_by is not None, allowed_by or "")
