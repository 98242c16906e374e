"""gunicorn's own settings (the Procfile's `web` passes the rest on its command line).

The master process logs before it loads the application (and so before the Django settings
install redaction): install it here too, so no process of the web tier writes a secret.
"""
from convos.log_redaction import install_record_redaction

install_record_redaction()


def child_exit(server, worker) -> None:
    """A worker is gone: drop its live-gauge files from the Prometheus multiprocess directory
    (convos/metrics.py; its counters and histograms stay, they are cumulative). The directory is
    set by the Django settings, which the master loads here if it has not yet (no preload)."""
    import os

    try:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convos.settings")
            from django.conf import settings

            settings.VAR_DIR  # noqa: B018 - loading the settings sets PROMETHEUS_MULTIPROC_DIR
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
    except Exception:  # housekeeping only: never take the master down over it
        server.log.exception("could not clear worker %s's metrics files", worker.pid)


def post_worker_init(worker) -> None:
    """The worker has loaded Django: import the URLconf (and with it every view, DRF, the admin)
    now, before it accepts requests. Otherwise the first request each worker serves pays for the
    imports: ~90 ms instead of ~5 ms here, after every deploy or restart."""
    try:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 - resolving the patterns imports the views
    except Exception:  # a broken URLconf shows on the first request, with its traceback: not here
        worker.log.exception("could not import the URLconf before serving")
