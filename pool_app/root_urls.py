"""The pool's routes at the site's root: the operator's claim page and production's `/version`."""
from django.urls import path

from pool_app import pages
from pool_app.public_apis import VersionApi

urlpatterns = [
    path("", pages.claim_page, name="claim-page"),
    path("version", VersionApi.as_view(), name="version"),
]
