"""A tenant's look in its admin workspace: its name and colours, served as a small stylesheet (no inline style:
the CSP has no 'unsafe-inline'). Text colours are chosen for contrast, so any brand colour stays readable."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.cache import patch_cache_control

DARK_TEXT = "#1a1a1a"
LIGHT_TEXT = "#ffffff"


def _rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else float(((s + 0.055) / 1.055) ** 2.4)

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_on(background: str) -> str:
    return LIGHT_TEXT if contrast(background, LIGHT_TEXT) >= contrast(background, DARK_TEXT) else DARK_TEXT


def shade(colour: str, factor: float) -> str:
    """Darker (factor < 1) version of a colour."""
    return "#" + "".join(f"{max(0, min(255, round(c * factor))):02x}" for c in _rgb(colour))


def readable_on_white(colour: str) -> str:
    """The colour, darkened until its contrast on white reaches 4.5:1 (WCAG AA for text)."""
    current = colour
    for _ in range(20):
        if contrast(current, LIGHT_TEXT) >= 4.5:
            return current
        current = shade(current, 0.85)
    return DARK_TEXT


def _safe(colour: str | None, default: str) -> str:
    value = (colour or "").strip()
    if len(value) == 7 and value.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in value[1:]):
        return value.lower()
    return default


@dataclass(frozen=True)
class Brand:
    name: str
    header: str
    accent: str

    @property
    def initials(self) -> str:
        words = [w for w in self.name.replace("-", " ").split() if w[:1].isalnum()]
        return "".join(w[0] for w in words[:2]).upper() or "A"

    @property
    def version(self) -> str:
        return hashlib.sha256(f"{self.header}{self.accent}".encode()).hexdigest()[:10]

    @property
    def css_url(self) -> str:
        return f"{reverse('admin:brand_css')}?v={self.version}"

    def css(self) -> str:
        header_text = text_on(self.header)
        accent_text = text_on(self.accent)
        breadcrumbs = shade(self.header, 0.8)
        link = readable_on_white(self.accent)
        variables = (
            f"--header-bg: {self.header}; --header-color: {header_text}; --header-branding-color: {header_text};"
            f" --header-link-color: {header_text}; --accent: {header_text}; --breadcrumbs-bg: {breadcrumbs};"
            f" --breadcrumbs-fg: {text_on(breadcrumbs)}; --breadcrumbs-link-fg: {text_on(breadcrumbs)};"
            f" --primary: {self.header}; --primary-fg: {header_text};"
            f" --button-bg: {self.accent}; --button-fg: {accent_text}; --button-hover-bg: {shade(self.accent, 0.8)};"
            f" --default-button-bg: {shade(self.accent, 0.85)}; --default-button-hover-bg: {shade(self.accent, 0.7)};"
            f" --atrium-brand: {self.header}; --atrium-brand-fg: {header_text}; --atrium-accent: {self.accent};"
            f" --atrium-accent-fg: {accent_text};"
        )
        light = f" --link-fg: {link}; --link-hover-color: {shade(link, 0.8)}; --link-selected-fg: {shade(link, 0.8)};"
        return (
            "/* The organisation's colours (config/admin_brand.py). */\n"
            f':root, html[data-theme="auto"], html[data-theme="light"], html[data-theme="dark"] {{ {variables} }}\n'
            f':root, html[data-theme="light"] {{ {light} }}\n'
            f"@media (prefers-color-scheme: dark) {{ :root, html[data-theme=\"auto\"] {{ {variables} }} }}\n"
        )


def brand_for(tenant: Any) -> Brand:
    return Brand(name=str(getattr(tenant, "name", "") or "Atrium"),
                 header=_safe(getattr(tenant, "brand_colour", None), "#1f4e79"),
                 accent=_safe(getattr(tenant, "accent_colour", None), "#2a7ab0"))


def brand_css_view(request: HttpRequest) -> HttpResponse:
    """The current tenant's colours as CSS; public (the sign-in page is branded too) and cacheable per version."""
    tenant = getattr(request, "tenant", None)
    response = HttpResponse(brand_for(tenant).css(), content_type="text/css; charset=utf-8")
    patch_cache_control(response, public=True, max_age=3600)
    return response
