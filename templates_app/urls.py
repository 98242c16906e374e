from django.urls import path

from templates_app import apis

# Included at the root: /api/templates, /api/templates/<id>, /api/templates/<id>/visibility
# (no trailing slashes, like the pool's routes).
urlpatterns = [
    path("api/templates", apis.TemplatesApi.as_view(), name="templates"),
    path("api/templates/<id:template_id>", apis.TemplateDetailApi.as_view(), name="template-detail"),
    path("api/templates/<id:template_id>/visibility", apis.TemplateVisibilityApi.as_view(), name="template-visibility"),
]
