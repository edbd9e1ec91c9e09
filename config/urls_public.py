"""URLs of the public schema (the bare host): platform admin for tenants, probes."""

from django.contrib import admin
from django.urls import path

from config import health
from config.metrics import metrics_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]
