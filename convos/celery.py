"""The Celery app: the worker runs ticks, beat schedules them every TICK_INTERVAL_MS."""
import os

from celery import Celery
from celery.signals import worker_ready

from convos.log_redaction import install_record_redaction

# Celery's worker and beat replace the root logger's handlers with their own: redaction sits on
# the records themselves, so whatever handler prints them only sees redacted text.
install_record_redaction()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convos.settings")

app = Celery("convos")
# Every CELERY_* setting in convos/settings.py configures this app.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def tick_when_a_worker_starts(sender, **kwargs) -> None:
    """Run a tick as soon as a worker is up instead of waiting a whole TICK_INTERVAL_MS for beat:
    a pool that was down refills (and notices what changed meanwhile) right away."""
    sender.app.send_task("pool_app.tasks.pool_tick_task")
