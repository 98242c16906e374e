"""A Celery task that logs secrets and fails with one, for the worker redaction test (loaded in
a real worker with `-I tests.convos.log_probe`)."""
import logging

from convos.celery import app

logger = logging.getLogger("pool_app.services.tick")


@app.task(name="tests.convos.log_probe.leak")
def leak(secret: str) -> None:
    logger.error("provider answered 401 for Authorization: Bearer %s", secret)
    raise RuntimeError(f"upstream refused key {secret}")
