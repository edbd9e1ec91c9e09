"""Historical migrations are self-contained: they import no runtime code of the project.

A migration that imports a helper (config.tenant_cache.notify_trigger_sql, access.roles) changes what an old step
does whenever the helper changes, and breaks a fresh database when the helper is renamed. The only project imports
allowed are the ones Django's autodetector itself writes: a field class or a callable a field refers to.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from config.tenant_cache import notify_trigger_sql

ROOT = Path(__file__).resolve().parents[2]
APPS = ("tenants", "access", "audit", "inference", "config")

# (migration file, module): written by makemigrations for a custom field or an upload_to callable.
AUTODETECTOR_IMPORTS = {
    ("tenants/migrations/0001_initial.py", "tenants.fields"),
    ("tenants/migrations/0001_initial.py", "tenants.models"),
    ("tenants/migrations/0004_tenant_owned_settings_external_id.py", "tenants.models"),
    ("access/migrations/0002_sso_identities_api_keys.py", "tenants.fields"),
    ("inference/migrations/0003_chat_versions_share_attachments.py", "inference.models"),
    ("audit/platform/migrations/0003_siem_destinations.py", "tenants.fields"),
}


def _migration_files() -> list[Path]:
    return sorted(p for app in APPS for p in (ROOT / app).glob("**/migrations/[0-9]*.py"))


def _imported_modules(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):  # function-level imports too
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_there_are_migrations_to_check() -> None:
    assert len(_migration_files()) > 10


@pytest.mark.parametrize("path", _migration_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_migration_imports_no_runtime_code(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    relative = str(path.relative_to(ROOT))
    for module in _imported_modules(tree):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in {"django", "django_tenants", "django_celery_beat"}:
            continue
        assert (relative, module) in AUTODETECTOR_IMPORTS, f"{relative} imports {module}: inline what it needs"


@pytest.mark.parametrize("path", _migration_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_migration_functions_call_no_runtime_code(path: Path) -> None:
    """RunPython code uses the historical models (`apps.get_model`) and inlined values, never the project's
    modules: the field references the autodetector writes are allowed only at class level."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound = {alias.asname or alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import)
             for alias in node.names if alias.name.split(".")[0] in APPS}
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and node.id in bound:
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.id} at run time")


TRIGGER_MIGRATIONS = {
    "tenants.migrations.0002_cache_invalidation": [("tenants_tenant", None), ("tenants_domain", None)],
    "audit.migrations.0005_cache_invalidation": [("audit_consent", None), ("audit_processingnotice", None)],
    "access.migrations.0003_cache_invalidation": [
        ("access_apikey", ["prefix", "secret_hash", "user_id", "revoked_at", "expires_at"]),
        ("auth_user", ["username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser"]),
        ("auth_user_groups", None), ("auth_user_user_permissions", None), ("auth_group_permissions", None),
        ("auth_permission", None),
    ],
    "access.migrations.0008_bearer_cache_invalidation": [
        ("access_oidcconfig", None), ("access_useridentity", ["user_id", "issuer", "subject"]),
    ],
}


@pytest.mark.parametrize("module", sorted(TRIGGER_MIGRATIONS))
def test_inlined_triggers_notify_the_channel_the_listener_hears(module: str) -> None:
    """The inlined trigger SQL is what config.tenant_cache would write today. If the channel or the function
    changes there, this fails: add a new migration that re-creates the triggers instead of editing old ones."""
    operations = importlib.import_module(module).Migration.operations
    expected = [notify_trigger_sql(table, columns) for table, columns in TRIGGER_MIGRATIONS[module]]
    assert [(op.sql, op.reverse_sql) for op in operations] == expected
