"""The Celery app: the worker runs ticks, beat schedules them every TICK_INTERVAL_MS."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convos.settings")

app = Celery("convos")
# Every CELERY_* setting in convos/settings.py configures this app.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
