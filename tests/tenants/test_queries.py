"""tenants/queries.py round-trips: the encrypted columns a raw query reads are the ORM's, by name, in any schema;
schema and table names go through psycopg.sql.Identifier (a name with a quote stays one identifier)."""

from __future__ import annotations

import json
from typing import Any

from tenants import crypto, queries
from tenants.models import Tenant


def test_encrypted_rows_round_trip_the_tenant_columns(tenant_a: Any, db: None) -> None:
    tenant = Tenant.objects.get(pk=tenant_a.pk)
    tenant.credentials = {"anthropic": {"api_key": "sk-round-trip"}}
    tenant.save(update_fields=["credentials"])
    rows = {row.id: row for row in queries.encrypted_rows("public", "tenants_tenant", ["credentials", "audit_key"])}
    row = rows[tenant.pk]
    assert set(row.values) == {"credentials", "audit_key"}
    assert json.loads(crypto.decrypt(row.values["credentials"])) == tenant.credentials
    assert crypto.decrypt(row.values["audit_key"]) == tenant.audit_key


def test_encrypted_row_update_writes_each_column_by_name(tenant_a: Any, in_tenant: Any) -> None:
    from access.models import OIDCConfig

    with in_tenant(tenant_a):
        config, _ = OIDCConfig.objects.update_or_create(pk=1, defaults={"client_secret": "before"})
        assert queries.table_present(tenant_a.schema_name, "access_oidcconfig")
        queries.encrypted_row_update(tenant_a.schema_name, "access_oidcconfig", config.pk,
                                     {"client_secret": crypto.encrypt("after")})
        assert OIDCConfig.objects.get(pk=1).client_secret == "after"
        (row,) = queries.encrypted_rows(tenant_a.schema_name, "access_oidcconfig", ["client_secret"],
                                        for_update=True)
        assert row.id == config.pk and crypto.decrypt(row.values["client_secret"]) == "after"


def test_schema_names_are_identifiers_not_sql(db: None) -> None:
    odd = 'odd"; DROP SCHEMA public; --'
    assert not queries.schema_present(odd)
    queries.schema_create(odd)
    assert queries.schema_present(odd) and queries.schema_present("public")
    assert not queries.table_present(odd, "tenants_tenant") and queries.table_present("public", "tenants_tenant")
    queries.schema_drop(odd)
    assert not queries.schema_present(odd) and queries.schema_present("public")
