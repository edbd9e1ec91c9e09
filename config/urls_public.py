"""URLs of the public schema (the bare host): the platform admin, probes. No tenant page is served here."""

from django.urls import path

from config import health
from config.admin_sites import platform_site
from config.metrics import metrics_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", platform_site.urls),
]
