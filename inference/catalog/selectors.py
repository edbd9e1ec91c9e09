"""Reads of the model catalog, cached in-process for a few seconds because every model call resolves a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inference.catalog.models import BedrockProfile, CatalogModel
from inference.catalog.snapshot import CatalogSnapshot

TIERS = ("opus", "sonnet", "haiku")


@dataclass(frozen=True)
class CatalogEntry:
    model_id: str
    display_name: str
    tier: str | None
    created_at: datetime
    anthropic_id: str
    bedrock_id: str
    bedrock_profile: str
    vertex_id: str
    input_price_cents_per_mtok: int
    aliases: tuple[str, ...] = field(default=())

    def provider_model_id(self, provider: str, region: str = "") -> str | None:
        """The id this model has at a provider (and Bedrock region), or None when that provider does not serve it."""
        if provider == "anthropic":
            return self.anthropic_id or None
        if provider == "vertex":
            return self.vertex_id or None
        if provider == "bedrock":
            if not self.bedrock_id:
                return None
            return bedrock_prefix(self.bedrock_profile, region) + self.bedrock_id
        return None


def bedrock_prefix(profile: str, region: str) -> str:
    if profile == BedrockProfile.GLOBAL:
        return "global."
    if profile == BedrockProfile.GEO:
        geo = region.split("-", 1)[0]
        return {"us": "us.", "eu": "eu.", "ap": "apac.", "ca": "ca.", "sa": "sa.", "jp": "jp."}.get(geo, "us.")
    return ""


@dataclass(frozen=True)
class _Snapshot:
    entries: tuple[CatalogEntry, ...]
    by_name: dict[str, CatalogEntry]


def _load() -> _Snapshot:
    rows = list(CatalogModel.objects.filter(enabled=True).order_by("sort_order", "model_id"))
    entries = tuple(
        CatalogEntry(
            model_id=r.model_id,
            display_name=r.display_name,
            tier=r.tier or None,
            created_at=r.released_at,
            anthropic_id=r.anthropic_id,
            bedrock_id=r.bedrock_id,
            bedrock_profile=r.bedrock_profile,
            vertex_id=r.vertex_id,
            input_price_cents_per_mtok=r.input_price_cents_per_mtok,
            aliases=tuple(r.aliases or ()),
        )
        for r in rows
    )
    by_name: dict[str, CatalogEntry] = {}
    for row, entry in zip(rows, entries, strict=True):
        for name in (entry.model_id, *entry.aliases):
            by_name.setdefault(name, entry)
        if row.is_tier_default and row.tier:
            by_name[row.tier] = entry
    for tier in TIERS:  # a tier with no marked default resolves to its first model
        if tier not in by_name:
            first = next((e for e in entries if e.tier == tier), None)
            if first is not None:
                by_name[tier] = first
    return _Snapshot(entries=entries, by_name=by_name)


_catalog = CatalogSnapshot(_load)


def catalog_invalidate() -> None:
    """Forget the cached catalog (this process); other processes pick edits up within ATRIUM_CATALOG_CACHE_S."""
    _catalog.forget()


def catalog_entries() -> list[CatalogEntry]:
    return list(_catalog.current().entries)


def catalog_entry(name: str) -> CatalogEntry | None:
    """A tier (`sonnet`), model id (`claude-sonnet-5-5`) or alias, resolved to its enabled catalog entry."""
    return _catalog.current().by_name.get(name)


def known_model_names() -> list[str]:
    """Every name the catalog accepts (tiers, ids, aliases); tenants.validators uses it for allow-lists."""
    return sorted(_catalog.current().by_name)


def usage_per_tenant(days: int = 30) -> list[dict[str, Any]]:
    """Requests and tokens of every tenant over the last `days` days (one query per tenant schema)."""
    from datetime import UTC, datetime, timedelta

    from inference.queries import usage_totals
    from tenants.models import Tenant

    since = datetime.now(UTC).date() - timedelta(days=days - 1)
    rows = []
    for tenant in Tenant.objects.exclude(schema_name="public").order_by("name"):
        totals = usage_totals(tenant.schema_name, since)
        rows.append({"tenant": tenant.schema_name, "name": tenant.name, "requests": totals.requests,
                     "errors": totals.errors, "input_tokens": totals.input_tokens,
                     "output_tokens": totals.output_tokens})
    return rows
