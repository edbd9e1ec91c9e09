"""`manage.py provider_simulator --port 8765`: the loopback stand-in for Anthropic, Bedrock and Vertex."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.simulator.__main__ import serve


class Command(BaseCommand):
    help = "Run the provider simulator (Anthropic, Bedrock, Vertex wire formats with fault injection)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--chunk-delay-ms", type=int, default=0, help="pause between streamed text deltas")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            serve(options["host"], options["port"], options["chunk_delay_ms"])
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc.strerror}") from exc
