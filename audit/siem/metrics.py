"""Prometheus gauges of SIEM streaming, read from the cursor rows at scrape time (whichever process streams).

- atrium_audit_siem_lag_entries: the chain's head (as the streamer last saw it) minus the last acknowledged entry;
- atrium_audit_siem_consecutive_failures: failed deliveries in a row (0 when the last one was acknowledged);
- atrium_audit_siem_seconds_since_caught_up: how long ago the destination last had nothing left to send. This one
  also grows when no streamer runs at all (the lag, read from the database, would stand still).
Only enabled destinations are reported, and the operator's only while ATRIUM_SIEM_URL is set.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from audit.platform.models import SiemCursor
from audit.siem.streamer import OPERATOR

LABELS = ["destination", "chain"]


class SiemCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily("atrium_audit_siem_lag_entries",
                                "Audit entries written but not yet acknowledged by the SIEM", labels=LABELS)
        failures = GaugeMetricFamily("atrium_audit_siem_consecutive_failures",
                                     "Failed SIEM deliveries in a row", labels=LABELS)
        since = GaugeMetricFamily("atrium_audit_siem_seconds_since_caught_up",
                                  "Seconds since the SIEM last had every entry", labels=LABELS)
        now = timezone.now()
        # Paused destinations, and the operator's once ATRIUM_SIEM_URL is unset, keep their cursors (they resume
        # where they stopped) but are not reported: their lag would raise alerts about nothing.
        live = Q(destination__enabled=True) | Q(destination__isnull=True) if settings.ATRIUM_SIEM_URL else Q(
            destination__enabled=True)
        try:
            rows = list(SiemCursor.objects.filter(live).values_list(
                "destination__name", "chain", "last_seq", "head_seq", "failures", "caught_up_at"))
        except DatabaseError:  # /metrics answers without these rather than failing
            rows = []
        for name, chain, last_seq, head_seq, failed, caught_up_at in rows:
            labels = [name or OPERATOR, chain]
            lag.add_metric(labels, max(head_seq - last_seq, 0))
            failures.add_metric(labels, failed)
            if caught_up_at is not None:
                since.add_metric(labels, (now - caught_up_at).total_seconds())
        yield lag
        yield failures
        yield since


COLLECTOR = SiemCollector()
