"""gunicorn.conf.py's worker hook: the URLconf and its views are imported before the first request."""
import importlib.util
import logging
from pathlib import Path
from types import SimpleNamespace

from django.urls import clear_url_caches, get_resolver

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def _load_conf():
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", CONF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_resolves_the_url_patterns_when_a_worker_has_loaded_django():
    clear_url_caches()  # a resolver that has not loaded the URLconf yet, as in a new worker
    assert "url_patterns" not in get_resolver().__dict__
    _load_conf().post_worker_init(SimpleNamespace(log=logging.getLogger("gunicorn.test")))
    assert "url_patterns" in get_resolver().__dict__


def test_it_logs_instead_of_failing_the_worker_when_the_urlconf_is_broken(monkeypatch, settings):
    settings.ROOT_URLCONF = "convos.no_such_urlconf"
    clear_url_caches()
    logged: list[str] = []
    log = SimpleNamespace(exception=lambda message, *args: logged.append(message % args))
    _load_conf().post_worker_init(SimpleNamespace(log=log))
    assert logged == ["could not import the URLconf before serving"]
    clear_url_caches()
