"""Move one tenant between Atrium installations (docs/backup.md): `tenant_export` / `tenant_import`.

The archive (a tar file) holds:
- `schema.dump`: `pg_dump --format=custom --schema=<tenant>`: every table of the tenant (users, roles, API key
  hashes, conversations, audit chain, consents, jobs), its functions and triggers;
- `tenant.json`: the tenant's row (policy, limits, provider order…) and its domains, without secrets;
- `secrets.fernet`: everything encrypted at rest with the source's ATRIUM_ENCRYPTION_KEYS (the tenant's audit MAC
  key and provider credentials on its row, every encrypted column inside its schema), decrypted and encrypted
  again with a one-off transfer key (Fernet) that the operator carries separately from the archive.

The import restores the schema, re-encrypts every secret with the target's own keys, creates the tenant row and its
domains, and verifies the audit chain with the moved key. The archive is as sensitive as a database backup
(conversations are in it in clear); the transfer key protects only the secrets.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import transaction
from django_tenants.utils import schema_context, tenant_context

from tenants import crypto, queries
from tenants.models import Domain, Tenant
from tenants.services import _encrypted_columns

FORMAT = "atrium-tenant-export/1"
_ROW_SECRETS = ("audit_key", "credentials")
_ROW_SKIP = {"id", "schema_name", "created_at", *_ROW_SECRETS}


class TransferError(Exception):
    """The archive cannot be written or read (one line for the operator)."""


@dataclass(frozen=True)
class ImportResult:
    tenant: Tenant
    rewrapped: int
    audit: Any


def _pg_env() -> tuple[dict[str, str], list[str]]:
    """libpq environment and connection arguments for pg_dump / pg_restore, from settings (a direct URL: a
    transaction pooler cannot serve them)."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    args = ["--dbname", str(db["NAME"])]
    if db.get("HOST"):
        args += ["--host", str(db["HOST"])]
    if db.get("PORT"):
        args += ["--port", str(db["PORT"])]
    if db.get("USER"):
        args += ["--username", str(db["USER"])]
    return env, args


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
        raise TransferError(f"{cmd[0]} failed: {detail}")


def _schema_secrets(schema: str) -> dict[str, dict[str, dict[str, str]]]:
    """{table: {id: {column: plaintext}}} for every encrypted column inside the tenant's schema."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    for table, columns in _encrypted_columns():
        if table == Tenant._meta.db_table or not queries.table_present(schema, table):
            continue
        for row in queries.encrypted_rows(schema, table, columns):
            values = {c: crypto.decrypt(v) for c, v in row.values.items() if v}
            if values:
                found.setdefault(table, {})[str(row.id)] = values
    return found


def tenant_export(*, tenant: Tenant, path: Path, transfer_key: str) -> Path:
    """Write `tenant`'s archive to `path`. `transfer_key`: a Fernet key (Fernet.generate_key())."""
    if tenant.schema_name == "public":
        raise TransferError("the public schema is not a tenant")
    sealer = _sealer(transfer_key)
    row = {f.name: f.value_from_object(tenant) for f in Tenant._meta.concrete_fields if f.name not in _ROW_SKIP}
    meta = {"format": FORMAT, "schema": tenant.schema_name, "tenant": row,
            "domains": list(Domain.objects.filter(tenant=tenant).values("domain", "is_primary"))}
    secrets = {"audit_key": tenant.audit_key, "credentials": tenant.credentials or {},
               "schema": _schema_secrets(tenant.schema_name)}
    env, args = _pg_env()
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "schema.dump"
        _run(["pg_dump", *args, "--format=custom", "--no-owner", "--no-privileges", "--schema", tenant.schema_name,
              "--file", str(dump)], env)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w") as archive:
            _add(archive, "tenant.json", json.dumps(meta, default=str, sort_keys=True).encode())
            _add(archive, "secrets.fernet", sealer.encrypt(json.dumps(secrets, sort_keys=True).encode()))
            archive.add(dump, arcname="schema.dump")
    return path


def tenant_import(*, path: Path, transfer_key: str, verify: Callable[[], Any], domains: list[str] | None = None,
                  ) -> ImportResult:
    """Restore the archive at `path` as a new tenant of this installation, its secrets under this installation's
    ATRIUM_ENCRYPTION_KEYS. `domains` replaces the archive's domains (the target's base domain differs).

    `verify` (audit.chain.chain_verify: tenants imports no other app) proves the moved audit chain in the new
    tenant's schema; when its result is not `.ok` the import is undone and TransferError raised."""
    sealer = _sealer(transfer_key)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(path) as archive:
        meta = json.loads(_read(archive, "tenant.json"))
        if meta.get("format") != FORMAT:
            raise TransferError(f"{path} is not an Atrium tenant archive ({meta.get('format')!r})")
        try:
            secrets = json.loads(sealer.decrypt(_read(archive, "secrets.fernet")))
        except InvalidToken as exc:
            raise TransferError("the transfer key does not open this archive") from exc
        schema = str(meta["schema"])
        if Tenant.objects.filter(schema_name=schema).exists() or _schema_exists(schema):
            raise TransferError(f"a tenant or schema named {schema!r} already exists here")
        wanted = domains or [d["domain"] for d in meta["domains"]]
        taken = list(Domain.objects.filter(domain__in=wanted).values_list("domain", flat=True))
        if taken:
            raise TransferError(f"domain already in use here: {', '.join(taken)}")
        dump = Path(tmp) / "schema.dump"
        dump.write_bytes(_read(archive, "schema.dump"))
        env, args = _pg_env()
        _run(["pg_restore", *args, "--no-owner", "--no-privileges", "--exit-on-error", str(dump)], env)
    try:
        with transaction.atomic():
            rewrapped = _rewrap(schema, secrets["schema"])
            tenant = Tenant(schema_name=schema, **meta["tenant"])
            tenant.audit_key = secrets["audit_key"]
            tenant.credentials = secrets["credentials"]
            tenant.save()  # the schema exists: django-tenants does not create or migrate it again
            for n, name in enumerate(wanted):
                Domain.objects.create(domain=name, tenant=tenant, is_primary=n == 0)
    except Exception:
        _drop_schema(schema)  # leave nothing half-imported
        raise
    with tenant_context(tenant):
        audit = verify()
    if not audit.ok:
        Domain.objects.filter(tenant=tenant).delete()
        Tenant.objects.filter(pk=tenant.pk).delete()
        _drop_schema(schema)
        raise TransferError(f"the audit chain of {schema} does not verify here ({audit}); nothing was imported")
    return ImportResult(tenant=tenant, rewrapped=rewrapped, audit=audit)


def _drop_schema(schema: str) -> None:
    queries.schema_drop(schema)


def _rewrap(schema: str, values: dict[str, dict[str, dict[str, str]]]) -> int:
    count = 0
    with schema_context(schema):
        for table, rows in values.items():
            for row_id, columns in rows.items():
                queries.encrypted_row_update(schema, table, row_id,
                                             {c: crypto.encrypt(v) for c, v in columns.items()})
                count += 1
    return count


def _schema_exists(schema: str) -> bool:
    return queries.schema_present(schema)


def _sealer(transfer_key: str) -> Fernet:
    try:
        return Fernet(transfer_key.encode() if isinstance(transfer_key, str) else transfer_key)
    except (ValueError, TypeError) as exc:
        raise TransferError("the transfer key must be a Fernet key (32 url-safe base64 bytes)") from exc


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    archive.addfile(info, io.BytesIO(data))


def _read(archive: tarfile.TarFile, name: str) -> bytes:
    try:
        member = archive.extractfile(name)
    except KeyError as exc:
        raise TransferError(f"the archive has no {name}") from exc
    if member is None:
        raise TransferError(f"the archive has no {name}")
    return member.read()
