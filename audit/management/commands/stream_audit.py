"""`manage.py stream_audit [--once] [--interval S]`: stream the audit trails to their SIEM destinations, as the
beat task does, in a long-running process of its own (audit.siem.streamer; docs/siem.md)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from audit.siem.streamer import siem_stream_all


class Command(BaseCommand):
    help = "Stream the audit trails to their SIEM destinations until stopped (SIGTERM or Ctrl-C)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass over every destination, then exit")
        parser.add_argument("--interval", type=float, default=None,
                            help="seconds between passes (default ATRIUM_SIEM_INTERVAL_S)")

    def handle(self, *args: Any, **options: Any) -> None:
        interval = float(options["interval"] or settings.ATRIUM_SIEM_INTERVAL_S)
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                close_old_connections()
                sent = siem_stream_all()
                if options["verbosity"] > 1 or options["once"]:
                    self.stdout.write(f"{sent} entries acknowledged")
                if options["once"] or stop.wait(interval):
                    return
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
