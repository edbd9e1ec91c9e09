"""The access policy: every seeded role against each model tier, tools, vision and max_tokens."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.backends import ModelBackend
from django.utils.functional import SimpleLazyObject

from access.errors import ModelNotAllowed, NotPermitted, ToolsNotAllowed, VisionNotAllowed, WriteNotAllowed
from access.policy import STANDARD_MAX_TOKENS, permitted_tiers, policy_check

ROLES = ["viewer", "basic_user", "power_user", "admin", "compliance_officer"]

# case id -> policy_check arguments
CASES: dict[str, dict[str, Any]] = {
    "haiku": {"model": "claude-haiku-4-5", "tier": "haiku", "max_tokens": 1024},
    "sonnet": {"model": "claude-sonnet-5-5", "tier": "sonnet", "max_tokens": 1024},
    "opus": {"model": "claude-opus-4-5", "tier": "opus", "max_tokens": 1024},
    "untiered": {"model": "claude-experimental", "tier": None, "max_tokens": 1024},
    "tools": {"model": "claude-haiku-4-5", "tier": "haiku", "max_tokens": 1024, "has_tools": True},
    "vision": {"model": "claude-haiku-4-5", "tier": "haiku", "max_tokens": 1024, "has_images": True},
    "max_tokens_6000": {"model": "claude-haiku-4-5", "tier": "haiku", "max_tokens": 6000},
    "max_tokens_50000": {"model": "claude-haiku-4-5", "tier": "haiku", "max_tokens": 50000},
}
W, M, T, V = WriteNotAllowed, ModelNotAllowed, ToolsNotAllowed, VisionNotAllowed
# Expected outcome per (case, role): an exception class, or (granted max_tokens, clamp reason).
# The alpha tenant keeps the default per-request maximum of 8192.
EXPECTED: dict[str, dict[str, Any]] = {
    "haiku": {"viewer": W, "basic_user": (1024, None), "power_user": (1024, None), "admin": (1024, None),
              "compliance_officer": W},
    "sonnet": {"viewer": W, "basic_user": (1024, None), "power_user": (1024, None), "admin": (1024, None),
               "compliance_officer": W},
    "opus": {"viewer": W, "basic_user": M, "power_user": (1024, None), "admin": (1024, None),
             "compliance_officer": W},
    "untiered": {"viewer": W, "basic_user": M, "power_user": M, "admin": (1024, None), "compliance_officer": W},
    "tools": {"viewer": W, "basic_user": T, "power_user": (1024, None), "admin": (1024, None),
              "compliance_officer": W},
    "vision": {"viewer": W, "basic_user": V, "power_user": (1024, None), "admin": (1024, None),
               "compliance_officer": W},
    "max_tokens_6000": {"viewer": W, "basic_user": (STANDARD_MAX_TOKENS, "high_tokens"),
                        "power_user": (6000, None), "admin": (6000, None), "compliance_officer": W},
    "max_tokens_50000": {"viewer": W, "basic_user": (STANDARD_MAX_TOKENS, "high_tokens"),
                         "power_user": (8192, "tenant_max"), "admin": (8192, "tenant_max"),
                         "compliance_officer": W},
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(role: str, case: str, tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, role=role)
    expected = EXPECTED[case][role]
    assert tenant_a.max_tokens_per_request == 8192
    with in_tenant(tenant_a):
        if isinstance(expected, type):
            with pytest.raises(expected) as info:
                policy_check(user=user, tenant=tenant_a, **CASES[case])
            assert info.value.status == 403
            assert info.value.message  # says what is missing
            return
        decision = policy_check(user=user, tenant=tenant_a, **CASES[case])
    granted, reason = expected
    assert decision.max_tokens == granted
    assert decision.clamp_reason == reason
    assert decision.clamped == (granted != CASES[case]["max_tokens"])
    assert decision.requested_max_tokens == CASES[case]["max_tokens"]


def test_refusal_names_the_missing_permission(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a), pytest.raises(ModelNotAllowed) as info:
        policy_check(user=user, tenant=tenant_a, model="claude-opus-4-5", tier="opus", max_tokens=10)
    assert info.value.permission == "access.use_opus"
    assert "use_opus" in info.value.message


def test_tenant_allow_list_applies_to_every_role(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    admin = make_user(tenant_a, role="admin")
    tenant_a.allowed_models = ["haiku", "claude-sonnet-special"]
    try:
        with in_tenant(tenant_a):
            with pytest.raises(ModelNotAllowed) as info:
                policy_check(user=admin, tenant=tenant_a, model="claude-opus-4-5", tier="opus", max_tokens=10)
            assert info.value.permission is None  # the tenant's allow-list, not the role, refused it
            assert policy_check(user=admin, tenant=tenant_a, model="claude-haiku-4-5", tier="haiku",
                                max_tokens=10).model == "claude-haiku-4-5"
            # An explicit model id on the list is allowed although its tier is not.
            assert policy_check(user=admin, tenant=tenant_a, model="claude-sonnet-special", tier="sonnet",
                                max_tokens=10).tier == "sonnet"
            assert permitted_tiers(user=admin, tenant=tenant_a) == ["haiku"]
    finally:
        tenant_a.allowed_models = []


def test_tenant_maximum_below_standard_clamps_everyone(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, role="basic_user")
    tenant_a.max_tokens_per_request = 1000
    try:
        with in_tenant(tenant_a):
            decision = policy_check(user=user, tenant=tenant_a, model="m", tier="haiku", max_tokens=5000)
    finally:
        tenant_a.max_tokens_per_request = 8192
    assert (decision.max_tokens, decision.clamp_reason) == (1000, "tenant_max")


def test_deactivated_tenant_or_user_is_refused(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, role="admin")
    tenant_a.is_active = False
    try:
        with in_tenant(tenant_a), pytest.raises(NotPermitted, match="deactivated"):
            policy_check(user=user, tenant=tenant_a, model="m", tier="haiku", max_tokens=10)
    finally:
        tenant_a.is_active = True
    user.is_active = False
    with in_tenant(tenant_a), pytest.raises(NotPermitted, match="deactivated"):
        policy_check(user=user, tenant=tenant_a, model="m", tier="haiku", max_tokens=10)


def test_role_edit_applies_to_the_next_request(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    """An admin edit of a role (Group permissions) is seen by the next request's fresh user object."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    user = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        assert permitted_tiers(user=user, tenant=tenant_a) == ["sonnet", "haiku"]
        group = Group.objects.get(name="basic_user")
        group.permissions.add(Permission.objects.get(content_type__app_label="access", codename="use_opus"))
        group.permissions.remove(Permission.objects.get(content_type__app_label="access", codename="use_haiku"))
        fresh = get_user_model().objects.get(pk=user.pk)  # what the next request loads
        assert permitted_tiers(user=fresh, tenant=tenant_a) == ["opus", "sonnet"]
        with pytest.raises(ModelNotAllowed):
            policy_check(user=fresh, tenant=tenant_a, model="claude-haiku-4-5", tier="haiku", max_tokens=10)


def test_roles_are_seeded_in_each_tenant_and_seeding_keeps_admin_edits(tenant_b: Any, in_tenant: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    from access.roles import ROLE_PERMISSIONS as SEEDED
    from access.roles import roles_seed

    with in_tenant(tenant_b):
        assert set(Group.objects.values_list("name", flat=True)) >= set(SEEDED)
        viewer = Group.objects.get(name="viewer")
        assert sorted(viewer.permissions.values_list("codename", flat=True)) == ["read"]
        viewer.permissions.add(Permission.objects.get(content_type__app_label="access", codename="use_haiku"))
        roles_seed()
        assert sorted(viewer.permissions.values_list("codename", flat=True)) == ["read", "use_haiku"]


class _Refuses:
    """A backend that vetoes one permission (PermissionDenied), as a custom deployment's might."""

    def authenticate(self, request: Any, **kwargs: Any) -> None:
        return None

    def has_perm(self, user: Any, perm: str, obj: Any = None) -> bool:
        from django.core.exceptions import PermissionDenied

        if perm == "access.use_opus":
            raise PermissionDenied
        return False


def test_the_policy_answers_permissions_as_django_does(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                       settings: Any) -> None:
    """access.policy.has_perm (its backends loaded once) against User.has_perm: granted, missing, a deactivated
    user, an active and an inactive superuser, a backend's veto, and a change of AUTHENTICATION_BACKENDS."""
    from access.policy import has_perm

    perms = ["access.write", "access.use_opus", "access.use_haiku", "access.admin", "access.nope"]
    with in_tenant(tenant_a):
        users = [make_user(tenant_a, role) for role in ("basic_user", "power_user", "admin", "viewer")]
        inactive = make_user(tenant_a, "power_user", is_active=False)
        root = make_user(tenant_a, "viewer")  # a tenant refuses a stored superuser: the flag is set in memory only
        root.is_superuser = True
        sleeping_root = make_user(tenant_a, "viewer", is_active=False)
        sleeping_root.is_superuser = True
        for user in [*users, inactive, root, sleeping_root]:
            assert [has_perm(user, p) for p in perms] == [user.has_perm(p) for p in perms], user.username
        assert has_perm(users[1], "access.use_opus") and not has_perm(inactive, "access.write")
        assert has_perm(root, "access.nope") and not has_perm(sleeping_root, "access.write")
        # request.user is a lazy stand-in (the web chat's and the admin's users): answered as the user it wraps.
        lazy = [SimpleLazyObject(lambda u=user: u) for user in users]
        assert [[has_perm(u, p) for p in perms] for u in lazy] == [[u.has_perm(p) for p in perms] for u in users]

        settings.AUTHENTICATION_BACKENDS = ["tests.access.test_policy._Refuses", *settings.AUTHENTICATION_BACKENDS]
        power = users[1]
        assert not power.has_perm("access.use_opus") and not has_perm(power, "access.use_opus")
        assert has_perm(power, "access.write") == power.has_perm("access.write") is True
        with pytest.raises(ModelNotAllowed):
            policy_check(user=power, tenant=tenant_a, model="claude-opus-4-5", tier="opus", max_tokens=10)


class NoPermissionsFromCache(ModelBackend):
    """Django's has_perm, but permissions from somewhere else than the user's loaded ones."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        return set()


def test_the_one_set_lookup_is_only_for_model_backends(tenant_a: Any, make_user: Any, in_tenant: Any,
                                                        settings: Any) -> None:
    """has_perm answers from the user's loaded permissions only while every backend is Django's ModelBackend
    (ours are): with a subclass that answers otherwise, its answer counts, as in User.has_perm."""
    from access.policy import has_perm

    with in_tenant(tenant_a):
        power = make_user(tenant_a, "power_user")
        assert has_perm(power, "access.use_opus") and power.has_perm("access.use_opus")
        settings.AUTHENTICATION_BACKENDS = ["tests.access.test_policy.NoPermissionsFromCache"]
        assert "access.use_opus" in power._perm_cache
        assert not power.has_perm("access.use_opus") and not has_perm(power, "access.use_opus")
