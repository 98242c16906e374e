from django.contrib import admin

from templates_app.models import AgentTemplate


@admin.register(AgentTemplate)
class AgentTemplateAdmin(admin.ModelAdmin):
    list_display = ("id", "agent_name", "visibility", "creator_id", "created_at", "updated_at")
    list_filter = ("visibility",)
    search_fields = ("id", "agent_name", "instructions", "creator_id")
    readonly_fields = ("id", "created_at", "updated_at")
