"""access/queries.py round-trips: every column a raw query selects comes back under its own name with the value
the ORM has, so a reordered, added or renamed column cannot shift values into the wrong field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.utils import timezone


def test_api_key_rows_round_trip_every_key_and_user_column(tenant_a: Any, make_user: Any, in_tenant: Any) -> None:
    from django.contrib.auth import get_user_model

    from access.models import ApiKey
    from access.queries import api_key_rows, key_columns, user_columns
    from access.services import api_key_create

    user = make_user(tenant_a, role="power_user", first_name="Ada", last_name="Lovelace")
    with in_tenant(tenant_a):
        key, _raw = api_key_create(user=user, name="round trip", expires_at=timezone.now() + timedelta(days=3))
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        rows = api_key_rows(key.prefix)
        assert rows is not None
        orm_key = ApiKey.objects.values(*key_columns()).get(pk=key.pk)
        orm_user = get_user_model().objects.values(*user_columns()).get(pk=user.pk)
        assert rows.key == orm_key
        assert rows.user == orm_user
        assert set(rows.key) == {f.attname for f in ApiKey._meta.concrete_fields}
        assert set(rows.user) == {f.attname for f in get_user_model()._meta.concrete_fields}
        expected = {f"{p.content_type.app_label}.{p.codename}"
                    for p in Permission.objects.filter(group__user=user).select_related("content_type")}
        assert expected and rows.permissions == expected
        assert api_key_rows("00000000") is None


def test_user_permissions_round_trip_direct_and_group_permissions(tenant_a: Any, make_user: Any,
                                                                  in_tenant: Any) -> None:
    from access.queries import user_permissions

    user = make_user(tenant_a, role="viewer")
    with in_tenant(tenant_a):
        direct = Permission.objects.get(content_type__app_label="access", codename="use_tools")
        user.user_permissions.add(direct)
        via_group = {f"{p.content_type.app_label}.{p.codename}"
                     for p in Group.objects.get(name="viewer").permissions.select_related("content_type")}
        assert user_permissions(int(user.pk)) == via_group | {"access.use_tools"}
        assert user_permissions(-1) is None
