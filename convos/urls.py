from django.contrib import admin
from django.urls import include, path, register_converter

from convos.converters import IdConverter, ResourceIdConverter
from convos.health import healthz

# Registered before the apps' url modules are included: they use <id:...> and <resource:...>.
register_converter(IdConverter, "id")
register_converter(ResourceIdConverter, "resource")

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/pool/", include("pool_app.urls")),
    path("", include("pool_app.root_urls")),  # the claim page at /, /version
    path("", include("templates_app.urls")),
    path("services/", include("services_app.urls")),
    path("api/proxy/", include("services_app.proxy")),  # instances' email/SMS through the pool's keys
]

handler404 = "convos.exceptions.json_not_found"
handler500 = "convos.exceptions.json_server_error"
