"""Response headers Django has no setting for: Permissions-Policy (no camera, microphone, geolocation, payment...).

Content-Security-Policy comes from django-csp (settings CONTENT_SECURITY_POLICY), HSTS, nosniff, Referrer-Policy and
Cross-Origin-Opener-Policy from Django's SecurityMiddleware; docs/security.md lists them all.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class PermissionsPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.value = ", ".join(f"{feature}=()" for feature in settings.ATRIUM_PERMISSIONS_POLICY_DENY)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.value and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = self.value
        return response
