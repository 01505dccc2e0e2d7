"""Who is calling, and for which users they may read and write.

LMREC_AUTH=jwt: API Gateway's JWT authorizer has verified the token; the user id is the
configured claim (LMREC_JWT_USER_CLAIM, default "sub") of requestContext.authorizer.jwt.claims
in the HTTP API v2 event (Mangum hands the event to the app as scope["aws.event"]). Such a
caller reads and writes only their own recommendations and events; a token whose `scope`
claim holds LMREC_JWT_SERVICE_SCOPE is a backend and may act for any user.
LMREC_AUTH=iam: API Gateway has checked a SigV4 signature of a role allowed execute-api:Invoke,
that is, a backend: it may act for any user.
LMREC_AUTH=none: development on localhost; anyone may act for any user, and a recommendation's
`reason` names items from the requested user's history (README: "What `none` exposes").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from lmrec.settings import ApiSettings


@dataclass(frozen=True)
class Caller:
    user_id: str | None  # the token's user, when the caller is one user
    any_user: bool  # a backend (IAM, the service scope) or development mode


def _scopes(value: object) -> set[str]:
    """The token's scopes, one by one, each exactly as written: the claim is one string of
    scopes separated by spaces (RFC 8693 section 4.2), or a list of strings. Nothing is
    stripped, so "[lmrec/any-user]", "lmrec/any-user," or '"lmrec/any-user"' are scopes of
    their own. (API Gateway's HTTP API writes a list-valued claim as "[a b]": a token must
    carry its scopes as the standard string to be read here.)"""
    if isinstance(value, str):
        return set(value.split(" ")) - {""}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def _jwt_caller(request: Request, settings: ApiSettings) -> Caller:
    event = request.scope.get("aws.event") or {}
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get(
        "claims"
    )
    if not isinstance(claims, dict):
        raise HTTPException(401, "a verified token is required")
    if settings.jwt_service_scope in _scopes(claims.get("scope")):
        return Caller(None, True)
    user = claims.get(settings.jwt_user_claim)
    if not isinstance(user, str) or not user:
        raise HTTPException(401, f"the token has no {settings.jwt_user_claim!r} claim")
    return Caller(user, False)


async def get_caller(request: Request) -> Caller:
    settings: ApiSettings = request.app.state.settings
    if settings.auth == "jwt":
        return _jwt_caller(request, settings)
    return Caller(None, True)  # iam: a signed backend; none: development


def require_user(caller: Caller, user_id: str | None) -> None:
    """403 unless the caller may act for `user_id` (None: no user's data is involved)."""
    if user_id is None or caller.any_user or caller.user_id == user_id:
        return
    raise HTTPException(403, "a caller may only act for their own user id")


def require_service(caller: Caller) -> None:
    """403 unless the caller is a backend (IAM, the JWT service scope, or development):
    catalog writes are never a user's."""
    if not caller.any_user:
        raise HTTPException(403, "changing items needs the service scope (or an IAM caller)")


CallerDep = Annotated[Caller, Depends(get_caller)]
