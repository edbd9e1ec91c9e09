"""URLs of the public schema (the bare host): the platform admin, probes. No tenant page is served here."""

from django.urls import include, path

from access import mfa_views, passkeys
from config import health
from config.admin_sites import platform_site
from config.metrics import metrics_view
from inference.views import favicon

urlpatterns = [
    path("favicon.ico", favicon),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", platform_site.urls),
    # Platform staff confirm a second factor before the platform admin (access/mfa.py).
    path("account/mfa/setup/", mfa_views.mfa_setup, name="mfa_setup"),
    path("account/mfa/verify/", mfa_views.mfa_verify, name="mfa_verify"),
    path("account/mfa/passkey/", include(passkeys)),
]

# Django's own error responses: JSON on the APIs, Atrium's pages for browsers (config/error_views.py).
handler400 = "config.error_views.bad_request"
handler403 = "config.error_views.permission_denied"
handler404 = "config.error_views.page_not_found"
handler500 = "config.error_views.server_error"
