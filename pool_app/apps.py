from django.apps import AppConfig


class PoolAppConfig(AppConfig):
    name = "pool_app"
    verbose_name = "Pool"

    def ready(self) -> None:
        from pool_app.receivers import record_self_provision
        from services_app.signals import self_provision_requested

        # The instance calls services directly, so services tells whoever listens; dispatch_uid
        # keeps one receiver when ready() runs twice (tests, autoreload).
        self_provision_requested.connect(record_self_provision, dispatch_uid="pool-record-self-provision")

        from convos.metrics import register_scrape_collector
        from pool_app.metrics import PoolCollector

        # /metrics reads the pool database at scrape time (instances per status, target, outage).
        register_scrape_collector("pool", PoolCollector)
