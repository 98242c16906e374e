"""Serve fake instances from a process of their own, FOR BENCHMARKS AND TESTS ONLY.

    python manage.py fake_fleet --port 8765
    FAKE_FLEET_URL=http://127.0.0.1:8765 INFRA_PROVIDER=fake gunicorn ...   # and the worker, the tick

Serves the fake provider's instances and its /fleet/ control API on one asyncio loop
(services_app/providers/fake_fleet_server.py: health checks answered on the loop, every other
request through the fake provider's own handler), so gunicorn workers, Celery workers and
benchmarks share one fake fleet. State is in this process's memory: stopping it forgets every instance.
With --port 0 the system picks a free port; the first line printed names the URL either way.
"""
from __future__ import annotations

from django.conf import settings
from django.core.management import BaseCommand

from services_app.providers import fake_fleet_server


class Command(BaseCommand):
    help = "Serve a fake instance fleet (INFRA_PROVIDER=fake with FAKE_FLEET_URL): benchmarks and tests only."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765, help="0: pick a free port (printed)")
        parser.add_argument("--health-latency-ms", type=float, default=None,
                            help="sleep this long in each health check (default: FAKE_HEALTH_LATENCY_MS)")

    def handle(self, *args, host: str, port: int, health_latency_ms: float | None, **options) -> None:
        if health_latency_ms is not None:
            settings.FAKE_HEALTH_LATENCY_MS = health_latency_ms

        def listening(bound_port: int) -> None:
            # Flushed at once: whoever started this process waits for this line to know the port.
            self.stdout.write(f"Fake fleet serving on http://{host}:{bound_port}")
            self.stdout.flush()

        try:
            fake_fleet_server.serve(host, port, listening)
        except KeyboardInterrupt:
            pass
