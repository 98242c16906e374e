from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from convos.converters import IdConverter, ResourceIdConverter
from convos.health import healthz
from convos.metrics import metrics_view

# Registered before the apps' url modules are included: they use <id:...> and <resource:...>.
register_converter(IdConverter, "id")
register_converter(ResourceIdConverter, "resource")

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; METRICS_TOKEN when set
    path("admin/", admin.site.urls),
    path("api/pool/", include("pool_app.urls")),
    path("", include("pool_app.root_urls")),  # the claim page at /, /version
    path("", include("templates_app.urls")),
    path("services/", include("services_app.urls")),
    path("api/proxy/", include("services_app.proxy")),  # instances' email/SMS through the pool's keys
    # OpenAPI 3 (JSON, or YAML with ?format=yaml / Accept) and Swagger UI on it, assets from the sidecar.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

handler404 = "convos.exceptions.json_not_found"
handler500 = "convos.exceptions.json_server_error"
