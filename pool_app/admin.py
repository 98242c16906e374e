from django.contrib import admin
from django.utils.html import format_html_join

from pool_app.models import Instance, InstanceEvent


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "deploy_status", "agent_name", "url", "protected", "created_at", "claimed_at", "last_error")
    list_filter = ("status", "deploy_status", "protected")
    search_fields = ("id", "agent_name", "conversation_id", "owner_id", "template_id")
    date_hierarchy = "created_at"
    readonly_fields = tuple(
        f.name for f in Instance._meta.get_fields() if f.concrete and f.name not in ("protected",)
    ) + ("recent_events",)
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False  # instances are created by the pool, never typed in

    @admin.display(description="Recent events")
    def recent_events(self, obj: Instance):
        events = InstanceEvent.objects.using("pool").filter(instance_id=obj.pk)[:20]
        return format_html_join(
            "\n", "<div>{} · {} → {} · {} · {}</div>",
            ((e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.from_status or "-", e.to_status, e.actor, e.reason) for e in events),
        )


@admin.register(InstanceEvent)
class InstanceEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "instance_id", "from_status", "to_status", "actor", "reason")
    list_filter = ("actor", "to_status", "from_status")
    search_fields = ("instance_id", "reason")
    date_hierarchy = "created_at"
    list_per_page = 200

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the event log is a record: read-only

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
