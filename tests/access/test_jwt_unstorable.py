"""IdP claims PostgreSQL cannot store, in a genuine token (a real oidc-provider on loopback): a NUL (U+0000) in
the subject or email was a 500 when the account was created (a text column refuses it). Now the identity's keys
holding one are refused with a 401 that says which claim; a display name holding one is stored with U+FFFD
(docs/decisions.md, "Text PostgreSQL cannot store")."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.access.test_jwt import assert_refused, bearer, claims_for, idp_a  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("claim", ["sub", "email"])
def test_an_identity_claim_with_nul_is_refused_by_name(claim: str, client_a: Any, idp_a: Any,  # noqa: F811
                                                       in_tenant: Any, tenant_a: Any) -> None:
    from access.models import UserIdentity

    value = f"u-{uuid.uuid4().hex[:8]}\x00" + ("@a.example" if claim == "email" else "")
    client_a.raise_request_exception = False
    response = bearer(client_a, idp_a.mint(claims_for(idp_a, **{claim: value})))
    assert_refused(response, f"The identity provider's {claim} claim holds a character Atrium cannot store")
    with in_tenant(tenant_a):
        assert not UserIdentity.objects.filter(issuer=idp_a.issuer, subject__startswith="u-").exists()


def test_a_name_claim_with_nul_is_stored_replaced(client_a: Any, idp_a: Any, in_tenant: Any,  # noqa: F811
                                                  tenant_a: Any) -> None:
    from access.models import UserIdentity

    claims = claims_for(idp_a, given_name="Ada\x00", family_name="Love\x00lace")
    response = bearer(client_a, idp_a.mint(claims))
    assert response.status_code == 200, response.content[:300]
    with in_tenant(tenant_a):
        user = UserIdentity.objects.get(issuer=idp_a.issuer, subject=claims["sub"]).user
        assert (user.first_name, user.last_name) == ("Ada\ufffd", "Love\ufffdlace")
