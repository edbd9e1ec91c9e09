"""Server-rendered SVG charts for the usage dashboards: stacked bars per day with axes, gridlines and a legend.

SVG drawn on the server needs no script and no inline style (colours are SVG presentation attributes), so the
pages keep their strict Content-Security-Policy; every bar has a <title> (its tooltip and accessible name)."""

from __future__ import annotations

import math
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe palette (Okabe-Ito, then Tol's muted); "other" series beyond it are grey.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#332288", "#88CCEE",
           "#44AA99", "#882255", "#999933"]
OTHER = "#9a9a9a"
WIDTH, HEIGHT = 860, 300
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 14, 46


def value_label(metric: str, value: float) -> str:
    if metric == "cost":
        dollars = value / 1_000_000
        if dollars == 0:
            return "$0"
        return f"${dollars:,.4f}".rstrip("0").rstrip(".") if dollars < 1 else f"${dollars:,.2f}"
    if value >= 1_000_000:
        return f"{value / 1_000_000:,.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and evenly spaced round values reaching at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def limit_series(series: list[dict[str, Any]], limit: int = len(PALETTE)) -> list[dict[str, Any]]:
    """At most `limit` series: the largest, and the rest summed as "other"."""
    if len(series) <= limit:
        return series
    kept, rest = series[:limit - 1], series[limit - 1:]
    other = [sum(values) for values in zip(*(s["values"] for s in rest), strict=True)]
    return [*kept, {"key": f"other ({len(rest)})", "values": other, "other": True}]


def stacked_bars_svg(*, days: list[str], series: list[dict[str, Any]], metric: str, title: str) -> SafeString:
    """A stacked bar per day (series stacked in order), y axis in the metric's unit, x axis dates, legend below."""
    series = limit_series(series)
    totals = [sum(s["values"][i] for s in series) for i in range(len(days))]
    ticks = nice_ticks(max(totals, default=0))
    top = ticks[-1] or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, slot * 0.72)
    parts: list[str] = []
    for tick in ticks:  # gridlines and y labels
        y = TOP + plot_h - plot_h * tick / top
        parts.append(format_html('<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d0d0d0" stroke-width="1"/>',
                                 LEFT, WIDTH - RIGHT, f"{y:.1f}", f"{y:.1f}"))
        parts.append(format_html('<text x="{}" y="{}" text-anchor="end" font-size="11" fill="currentColor">{}</text>',
                                 LEFT - 6, f"{y + 4:.1f}", value_label(metric, tick)))
    every = max(1, math.ceil(len(days) / 10))  # at most about ten date labels
    for i, day in enumerate(days):
        x = LEFT + slot * i + (slot - bar_w) / 2
        base = TOP + plot_h
        for index, s in enumerate(series):
            value = s["values"][i]
            if not value:
                continue
            h = plot_h * value / top
            base -= h
            colour = OTHER if s.get("other") else PALETTE[index % len(PALETTE)]
            parts.append(format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" data-series="{}" data-day="{}">'
                '<title>{} · {}: {}</title></rect>',
                f"{x:.1f}", f"{base:.1f}", f"{bar_w:.1f}", f"{max(h, 0.5):.1f}", colour, s["key"], day, day,
                s["key"], value_label(metric, value)))
        if i % every == 0 or i == len(days) - 1:
            parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="currentColor">{}'
                                     '</text>', f"{x + bar_w / 2:.1f}", HEIGHT - BOTTOM + 16, day[5:]))
    parts.append(format_html('<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-width="1"/>',
                             LEFT, WIDTH - RIGHT, TOP + plot_h, TOP + plot_h))
    parts.append(format_html('<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-width="1"/>',
                             LEFT, LEFT, TOP, TOP + plot_h))
    unit = {"cost": "cost (USD)", "tokens": "tokens", "requests": "requests"}[metric]
    parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="currentColor" '
                             'transform="rotate(-90 14 {})">{}</text>', 14, TOP + plot_h / 2, TOP + plot_h / 2, unit))
    parts.append(format_html('<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="currentColor">'
                             'day (UTC)</text>', LEFT + plot_w / 2, HEIGHT - 8))
    svg = format_html('<svg class="usage-chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t" '
                      'xmlns="http://www.w3.org/2000/svg"><title id="{}-t">{}</title>{}</svg>',
                      WIDTH, HEIGHT, _slug(title), _slug(title), title, mark_safe("".join(parts)))  # noqa: S308 - each part is format_html output
    legend = format_html_join(
        "", '<li data-series="{}"><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" '
            'fill="{}"/></svg> {} <span class="legend-total">{}</span></li>',
        ((s["key"], OTHER if s.get("other") else PALETTE[i % len(PALETTE)], s["key"],
          value_label(metric, sum(s["values"]))) for i, s in enumerate(series)))
    empty = "" if series else '<p class="chart-empty">No usage in this period.</p>'
    return format_html('<figure class="usage-figure">{}<figcaption><ul class="legend">{}</ul>{}</figcaption>'
                       '</figure>', svg, legend, mark_safe(empty))  # noqa: S308 - a constant


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "chart"
