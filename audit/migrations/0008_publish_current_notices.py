"""Publish each tenant's current processing notice once, now that reads no longer publish it.

Until this version, GET /consent/, GET /chat/ and model calls published a new notice version on first sight of a
changed text. Versions are now published only when the policy changes (audit.services.notice_publish); a tenant
whose current text was never seen by a read gets its version here, so consent is asked for it. Self-contained:
raw SQL for the tenant row (public schema, on the search path), the historical model for the notice.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def publish(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    schema = getattr(connection, "schema_name", "public")
    if schema == "public":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT processing_notice FROM tenants_tenant WHERE schema_name = %s", [schema])
        row = cursor.fetchone()
    text = (row[0] or "").strip() if row else ""
    if not text:
        return
    notice_model = apps.get_model("audit", "ProcessingNotice")
    latest = notice_model.objects.order_by("-version").first()
    if latest is None or latest.text != text:
        notice_model.objects.create(version=(latest.version + 1) if latest else 1, text=text)


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_refuse_truncate")]
    operations = [migrations.RunPython(publish, migrations.RunPython.noop)]
