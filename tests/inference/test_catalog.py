"""The model catalog: tiers and ids resolve per provider, admin edits apply without code changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from inference.catalog.models import CatalogModel
from inference.catalog.selectors import catalog_entries, catalog_entry, catalog_invalidate
from inference.router import route
from inference.simulator import Simulator
from tenants.validators import validate_allowed_models
from tests.inference.routing import ask, targets

pytestmark = pytest.mark.django_db


def test_seeded_tiers_resolve_to_current_models() -> None:
    assert {t: catalog_entry(t).model_id for t in ("opus", "sonnet", "haiku")} == {  # type: ignore[union-attr]
        "opus": "claude-opus-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"}
    assert catalog_entry("claude-sonnet-5-5-latest").model_id == "claude-sonnet-5-5"  # type: ignore[union-attr]
    assert catalog_entry("gpt-4") is None


def test_bedrock_ids_carry_the_inference_profile_prefix() -> None:
    entry = catalog_entry("sonnet")
    assert entry is not None
    assert entry.provider_model_id("bedrock", "eu-west-1") == "global.anthropic.claude-sonnet-5-5-v1:0"
    CatalogModel.objects.filter(model_id="claude-sonnet-5-5").update(bedrock_profile="geo")
    catalog_invalidate()
    entry = catalog_entry("sonnet")
    assert entry is not None
    assert entry.provider_model_id("bedrock", "eu-west-1") == "eu.anthropic.claude-sonnet-5-5-v1:0"
    assert entry.provider_model_id("bedrock", "us-east-1") == "us.anthropic.claude-sonnet-5-5-v1:0"
    assert entry.provider_model_id("bedrock", "ap-northeast-1") == "apac.anthropic.claude-sonnet-5-5-v1:0"
    assert entry.provider_model_id("vertex", "us-east5") == "claude-sonnet-5-5"


def test_a_model_added_in_the_catalog_is_routable_without_code(sim: Simulator) -> None:
    CatalogModel.objects.create(model_id="claude-sonnet-6-0", display_name="Claude Sonnet 6", tier="sonnet",
                                anthropic_id="claude-sonnet-6-0", bedrock_id="anthropic.claude-sonnet-6-0-v1:0",
                                vertex_id="", released_at=datetime(2026, 11, 1, tzinfo=UTC))
    result = route(ask(model="claude-sonnet-6-0"), targets("vertex:us-east5", "bedrock:us-east-1"))
    # Vertex does not serve it (blank id), so the router goes straight to Bedrock.
    assert result.model_id == "global.anthropic.claude-sonnet-6-0-v1:0"
    assert result.attempts[0].reason == "model not offered by this provider"
    assert sim.requests(provider="vertex") == []
    validate_allowed_models(["claude-sonnet-6-0", "haiku"])


def test_disabled_models_disappear() -> None:
    CatalogModel.objects.filter(model_id="claude-opus-5-5").update(enabled=False)
    catalog_invalidate()
    assert catalog_entry("opus") is None
    assert "claude-opus-5-5" not in [e.model_id for e in catalog_entries()]


def test_catalog_admin_is_public_only(public_client: Client, client_a: Client, tenant_a: Any, make_user: Any) -> None:
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    public_client.force_login(root)
    page = public_client.get("/admin/catalog/catalogmodel/")
    assert page.status_code == 200 and b"claude-sonnet-5-5" in page.content
    assert public_client.get("/admin/catalog/catalogmodel/add/").status_code == 200
    # A tenant's administrator never sees or edits the platform catalog: the tenant site has no URL for it.
    make_user(tenant_a, role="admin", username="tenant-root", is_staff=True)
    login = client_a.post("/admin/login/?next=/admin/", {"username": "tenant-root", "password": "pw-Secret-123"})
    assert login.status_code == 302
    index = client_a.get("/admin/")
    assert index.status_code == 200 and b"catalog" not in index.content.lower()
    assert client_a.get("/admin/catalog/catalogmodel/").status_code == 404
