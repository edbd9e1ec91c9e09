"""`manage.py provider_health`: run the provider health checks once and print a table."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.health import provider_health_check_all


class Command(BaseCommand):
    help = "Check each configured provider target with a one-token request; update the breaker and history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-store", action="store_true", help="Do not record the results in the history.")

    def handle(self, *args: Any, **options: Any) -> None:
        results = provider_health_check_all(store=not options["no_store"])
        if not results:
            self.stdout.write("No provider targets are configured.")
            return
        header = f"{'TARGET':<24} {'CREDENTIALS':<22} {'STATUS':<14} {'HTTP':>4} {'MS':>6}  MODEL / DETAIL"
        self.stdout.write(header)
        for r in results:
            detail = r.model_id + (f"  {r.detail}" if r.detail else "")
            self.stdout.write(f"{r.target:<24} {r.credentials_source[:22]:<22} {r.status:<14} "
                              f"{r.http_status or '-':>4} {r.latency_ms:>6}  {detail}")
        down = [r for r in results if r.status != "up"]
        if down and len(down) == len(results):
            raise CommandError("every provider target failed its health check")
