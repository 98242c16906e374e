from django.contrib import admin
from django.urls import include, path

from convos.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/pool/", include("pool_app.urls")),
    path("services/", include("services_app.urls")),
]

handler404 = "convos.exceptions.json_not_found"
handler500 = "convos.exceptions.json_server_error"
