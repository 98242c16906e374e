from django.apps import AppConfig


class PoolAppConfig(AppConfig):
    name = "pool_app"
    verbose_name = "Pool"
