"""django-celery-beat's schedule admins, moved to the platform site: the schedule lives in the public schema and
runs tasks for every tenant, so only the platform may edit it. django-celery-beat registers its admins on Django's
default site when imported; they are taken off it here (the default site is mounted nowhere, and a test checks it
stays empty)."""

from __future__ import annotations

from django.contrib import admin
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from config.admin_sites import platform_site
from tenants.platform_admin import PlatformAuditMixin


class PeriodicTaskAdmin(PlatformAuditMixin, beat_admin.PeriodicTaskAdmin):
    audit_kind = "beat_schedule"


class ClockedScheduleAdmin(PlatformAuditMixin, beat_admin.ClockedScheduleAdmin):
    audit_kind = "beat_schedule"


class CrontabScheduleAdmin(PlatformAuditMixin, beat_admin.CrontabScheduleAdmin):
    audit_kind = "beat_schedule"


class SolarScheduleAdmin(PlatformAuditMixin, beat_admin.SolarScheduleAdmin):
    audit_kind = "beat_schedule"


class IntervalScheduleAdmin(PlatformAuditMixin, beat_admin.IntervalScheduleAdmin):
    audit_kind = "beat_schedule"


BEAT_ADMINS: list[tuple[type, type]] = [
    (PeriodicTask, PeriodicTaskAdmin), (ClockedSchedule, ClockedScheduleAdmin),
    (CrontabSchedule, CrontabScheduleAdmin), (SolarSchedule, SolarScheduleAdmin),
    (IntervalSchedule, IntervalScheduleAdmin),
]

for _model, _admin_class in BEAT_ADMINS:
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    platform_site.register(_model, _admin_class)
