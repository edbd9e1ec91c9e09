"""Every URL of both admin sites, derived from the sites' registries (so a new ModelAdmin is walked without anyone
listing it), and the rule a cross-boundary answer must follow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.admin.sites import all_sites
from django.urls import URLPattern, URLResolver

ADMIN_PREFIX = "/admin/"
# The views every ModelAdmin has; the walk proves each registered admin contributes all of them.
STANDARD_VIEWS = ("changelist", "add", "change", "delete", "history")
_PARAM = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>")
# Site-level views that are not "behind" the site's permission: the sign-in form, sign-out, the password reset
# confirmation, the JavaScript catalog. They show or change no object.
_OPEN_VIEWS = {"login", "logout", "jsi18n", "password_change", "password_change_done"}


@dataclass(frozen=True)
class AdminUrl:
    site: str
    path: str
    name: str
    model: str | None  # "app_label.model_name", None for site-level views
    writes: bool  # a POST here could change something


def _concrete(pattern: str, object_id: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name == "target":
            return "anthropic"
        if name == "content_type_id":
            return "1"
        if name == "app_label":
            return "x"
        return object_id

    return _PARAM.sub(fill, pattern)


def site_urls(site: admin.AdminSite, object_ids: dict[str, str] | None = None) -> list[AdminUrl]:
    """Every URL of `site`: each registered ModelAdmin's own (standard and custom get_urls), the index and each
    app index. `object_ids` maps "app_label.model_name" to a primary key to use (else "1")."""
    object_ids = object_ids or {}
    urls: list[AdminUrl] = [AdminUrl(site.name, ADMIN_PREFIX, "index", None, False)]
    labels = sorted({model._meta.app_label for model in site._registry})
    urls += [AdminUrl(site.name, f"{ADMIN_PREFIX}{label}/", "app_list", None, False) for label in labels]
    for model, model_admin in site._registry.items():
        label = f"{model._meta.app_label}.{model._meta.model_name}"
        base = f"{ADMIN_PREFIX}{model._meta.app_label}/{model._meta.model_name}/"
        object_id = object_ids.get(label, "1")
        for entry in model_admin.get_urls():
            if isinstance(entry, URLResolver):
                raise AssertionError(f"{label}: nested URL resolvers are not walked; flatten them")
            assert isinstance(entry, URLPattern)
            raw = str(entry.pattern)
            name = str(entry.name or raw)
            # The changelist is a write too: its actions (delete_selected) take a POST.
            writes = not (name.endswith("_history") or name.endswith("_data") or raw == "<path:object_id>/")
            urls.append(AdminUrl(site.name, base + _concrete(raw, object_id), name, label, writes))
    return urls


def standard_views_of(urls: list[AdminUrl], site: admin.AdminSite) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for url in urls:
        if url.model is None:
            continue
        for view in STANDARD_VIEWS:
            if url.name.endswith(f"_{view}"):
                found.setdefault(url.model, set()).add(view)
    return found


def uncovered_model_admins(sites: tuple[admin.AdminSite, ...]) -> list[str]:
    """ModelAdmins the walk would miss: on Django's default site (mounted nowhere, so never walked), on any other
    AdminSite instance than the two, or on both sites at once."""
    problems = [f"{m._meta.label} on the default admin site" for m in admin.site._registry]
    known = {id(site) for site in sites}
    for other in all_sites:
        if id(other) not in known and other.name != admin.site.name:  # the default site is checked above
            problems += [f"{m._meta.label} on unknown site {other.name}" for m in other._registry]
    seen: dict[Any, str] = {}
    for site in sites:
        for model in site._registry:
            if model in seen:
                problems.append(f"{model._meta.label} on both {seen[model]} and {site.name}")
            seen[model] = site.name
    return problems


def refused(response: Any, *, method: str) -> str | None:
    """None when `response` is a refusal (403, 404, or the sign-in redirect of an anonymous visitor); else why not."""
    status = response.status_code
    if status in (403, 404):
        return None
    if status == 302 and response["Location"].startswith(f"{ADMIN_PREFIX}login/"):
        return None
    where = response.get("Location", "")
    return f"{method} answered {status} {where}".strip()
