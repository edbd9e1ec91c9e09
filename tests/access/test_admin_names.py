"""The tenant admin speaks the product's words on every page, not Django's app and model names: the app and model
names of the sidebar, the breadcrumbs of every list, add and app page, and the page titles agree (roles, not
"Authentication and Authorization, Groups"). Walked as an administrator of tenant alpha sees it."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest

# Django's own names for the apps and models the tenant admin renames: none may show on any page.
DJANGO_WORDS = ("Authentication and Authorization", "Groups", "Users", "Group", "Audit and compliance",
                "Conversations and usage", "Axes", "Django OTP", "OTP WebAuthn", "Access")


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def _breadcrumbs(html: str) -> list[str]:
    match = re.search(r'<div class="breadcrumbs">(.*?)</div>', html, re.S)
    assert match, "no breadcrumbs"
    return [part.strip() for part in _text(match.group(1)).split("\u203a")]  # the breadcrumbs' separator


def _sidebar(html: str) -> dict[str, tuple[str, dict[str, str]]]:
    """app URL -> (app name, {model list URL: model name}) from the navigation sidebar."""
    nav = re.search(r'<nav class="sticky" id="nav-sidebar".*?</nav>', html, re.S)
    assert nav, "no sidebar"
    apps: dict[str, tuple[str, dict[str, str]]] = {}
    for block in re.findall(r'<div class="app-.*?</table>', nav.group(0), re.S):
        app_url, app_name = re.search(r'<a href="([^"]+)" class="section"[^>]*>([^<]+)</a>', block).groups()
        models = dict(re.findall(r'<th scope="row"[^>]*>\s*<a href="([^"]+)"[^>]*>([^<]+)</a>', block))
        apps[app_url] = (unescape(app_name.strip()), {url: unescape(name.strip()) for url, name in models.items()})
    return apps


@pytest.mark.django_db
def test_every_admin_page_names_apps_and_models_as_the_sidebar_does(tenant_a: Any, client_a: Any,
                                                                      make_user: Any, in_tenant: Any) -> None:
    admin_user = make_user(tenant_a, role="admin", is_staff=True)
    with in_tenant(tenant_a):
        client_a.force_login(admin_user)
    first = client_a.get("/admin/auth/group/")
    assert first.status_code == 200
    apps = _sidebar(first.content.decode())
    names = {name for name, _models in apps.values()}
    assert {"People and roles", "Sign-in and access", "Compliance and records", "Usage"} <= names, names
    assert apps["/admin/auth/"][1] == {"/admin/auth/group/": "Roles", "/admin/auth/user/": "Members"}
    shown = [n for app, models in apps.values() for n in (app, *models.values())]
    assert not [n for n in shown if any(re.search(rf"\b{word}\b", n) for word in DJANGO_WORDS)], shown

    walked = 0
    for app_url, (app_name, models) in apps.items():
        page = client_a.get(app_url)
        assert page.status_code == 200, app_url
        html = page.content.decode()
        assert _breadcrumbs(html) == ["Home", app_name], app_url
        assert f"<h1>{app_name} administration</h1>" in html, app_url
        for model_url, model_name in models.items():
            listing = client_a.get(model_url, follow=True)  # a one-row model opens on its row
            assert listing.status_code == 200, model_url
            html = listing.content.decode()
            assert _breadcrumbs(html)[:3] == ["Home", app_name, model_name], model_url
            title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
            assert not any(re.search(rf"\b{word}\b", title) for word in DJANGO_WORDS), (model_url, title)
            walked += 1
    assert walked >= 10  # the walk reached the tenant admin's models, not an empty sidebar

    add = client_a.get("/admin/auth/group/add/").content.decode()
    assert _breadcrumbs(add) == ["Home", "People and roles", "Roles", "Add role"]
    assert "<title>Add role |" in add
    listing = client_a.get("/admin/auth/group/").content.decode()
    assert "<title>Select role to change |" in listing
    assert not any(re.search(rf"\b{word}\b", _text(listing)) for word in ("Groups", "Authentication and Authorization"))
