"""Limits on what a request may make the server do before any view runs: body size per route, JSON nesting depth.

Why a middleware and not a view decorator: Django's CSRF middleware reads `request.POST` (parsing the whole body)
in process_view, before any view decorator could refuse, so the unauthenticated login form would still parse a
31 MiB body. This middleware sits above it and refuses on the declared Content-Length, without reading a byte.
Large bodies are accepted only under ATRIUM_LARGE_BODY_PREFIXES (the Anthropic API and the conversations API, where
images, documents and attachments travel); every other route (forms, admin, login) gets ATRIUM_FORM_MAX_BYTES.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from config import jsonfast
from config.settings_once import setting


class JsonTooDeep(ValueError):
    """The document nests deeper than ATRIUM_JSON_MAX_DEPTH (or than the parser's own recursion limit)."""


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether `value` nests lists/objects deeper than `max_depth` (the outermost list or object is depth 1).
    Iterative, a level at a time: a deep document cannot recurse here, and each container costs one step."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > max_depth:
            return True
        below: list[Any] = []
        for node in level:
            below += [child for child in (node.values() if isinstance(node, dict) else node)
                      if isinstance(child, dict | list)]
        level = below
        depth += 1
    return False


def _openers_at_most(raw: bytes | str, limit: int) -> bool:
    """Whether the text holds at most `limit` '[' and '{' in all (inside strings too): its JSON then cannot nest
    deeper than `limit`, whatever its shape (a count in C instead of a walk over the decoded document)."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{") <= limit
    return raw.count(b"[") + raw.count(b"{") <= limit


def json_loads_limited(raw: bytes | str, *, max_depth: int | None = None) -> Any:
    """json.loads, refusing documents nested deeper than the limit with JsonTooDeep (a ValueError), and (a
    ValueError) what json reads but is not JSON text: NaN, Infinity and lone surrogates (config.jsonfast.loads_strict:
    the fast encoder would pass NaN on as null, and a lone surrogate, which has no UTF-8, failed the call's record
    after the provider had answered: a 500)."""
    limit = max_depth if max_depth is not None else setting("ATRIUM_JSON_MAX_DEPTH")
    try:
        value = jsonfast.loads_strict(raw)
    except RecursionError as exc:  # the C decoder's own guard, far above our limit
        raise JsonTooDeep(f"JSON nested deeper than {limit} levels") from exc
    if not _openers_at_most(raw, limit) and json_depth_exceeds(value, limit):
        raise JsonTooDeep(f"JSON nested deeper than {limit} levels")
    return value


def body_limit(path: str) -> int:
    """The largest body `path` accepts (the settings read once: config.settings_once; every request asks)."""
    if path.startswith(tuple(setting("ATRIUM_LARGE_BODY_PREFIXES"))):
        return int(setting("DATA_UPLOAD_MAX_MEMORY_SIZE"))
    return int(setting("ATRIUM_FORM_MAX_BYTES"))


def too_large_response(request: HttpRequest, limit: int) -> HttpResponse:
    """413 in the format of the path: Anthropic's error JSON on the APIs, a page for browsers."""
    message = f"The request body is larger than this server accepts ({limit} bytes)."
    if request.path_info.startswith(("/v1/", "/api/")):
        return JsonResponse({"type": "error", "error": {"type": "request_too_large", "message": message}},
                            status=413)
    return render(request, "errors/error.html", {"status": 413, "title": "Request too large", "message": message},
                  status=413)


class BodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return body_refusal(request) or self.get_response(request)


def body_refusal(request: HttpRequest) -> HttpResponse | None:
    """The 413 for a request whose declared body is over its path's limit, else None (this middleware's check, and
    the API lane's, config/api_lane.py)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0  # Django reads a malformed length as an empty body too
    limit = body_limit(request.path_info)
    return too_large_response(request, limit) if declared > limit else None


def _drf_parser() -> Any:
    from rest_framework.exceptions import ParseError
    from rest_framework.parsers import JSONParser

    class LimitedJSONParser(JSONParser):
        """DRF's JSON parser with the depth limit; a too deep or malformed body is a 400, never a 500."""

        def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
            raw = stream.read() if stream is not None else b""
            try:
                return json_loads_limited(raw or b"null")
            except JsonTooDeep as exc:
                raise ParseError(str(exc)) from exc
            except ValueError as exc:
                raise ParseError(f"JSON parse error - {exc}") from exc

    return LimitedJSONParser


LimitedJSONParser = _drf_parser()
