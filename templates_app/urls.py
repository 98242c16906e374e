from django.urls import path

from templates_app import apis

# Mounted at /api/templates (no trailing slashes, like the pool's routes).
urlpatterns = [
    path("", apis.TemplatesApi.as_view(), name="templates"),
    path("/<str:template_id>", apis.TemplateDetailApi.as_view(), name="template-detail"),
    path("/<str:template_id>/visibility", apis.TemplateVisibilityApi.as_view(), name="template-visibility"),
]
