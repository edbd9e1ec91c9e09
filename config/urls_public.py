"""URLs of the public schema (the bare host): platform admin for tenants, probes."""

from django.contrib import admin
from django.urls import path

from config import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]
