from django.contrib import admin

from services_app.models import InstanceInfra, InstanceService, ProviderStatus


class RecordOnly:
    """Services' rows are the only record of paid resources: deleting one from admin would orphan
    what it tracks (an instance's project, a funded key). They change only through services."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class InstanceServiceInline(admin.TabularInline):
    model = InstanceService
    fields = ("tool_id", "resource_id", "status", "provisioned_at", "destroyed_at", "last_error")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(InstanceInfra)
class InstanceInfraAdmin(RecordOnly, admin.ModelAdmin):
    list_display = ("instance_id", "provider", "url", "railway_project_id", "image_tag", "created_at", "torn_down_at", "last_error")
    list_filter = ("provider", ("torn_down_at", admin.EmptyFieldListFilter))
    search_fields = ("instance_id", "railway_project_id", "railway_service_id", "url")
    # Token hash and nonce are never shown: they identify secrets even if they are not secrets.
    fields = ("instance_id", "provider", "url", "railway_project_id", "railway_service_id",
              "railway_environment_id", "image_tag", "provider_state", "last_error", "created_at", "updated_at", "torn_down_at")
    readonly_fields = fields
    inlines = [InstanceServiceInline]


@admin.register(InstanceService)
class InstanceServiceAdmin(RecordOnly, admin.ModelAdmin):
    list_display = ("instance_id", "tool_id", "resource_id", "status", "provisioned_at", "destroyed_at", "last_error")
    list_filter = ("tool_id", "status")
    search_fields = ("instance__instance_id", "resource_id")
    readonly_fields = ("instance", "tool_id", "resource_id", "config", "status", "last_error", "provisioned_at", "destroyed_at")


@admin.register(ProviderStatus)
class ProviderStatusAdmin(RecordOnly, admin.ModelAdmin):
    """Last error and last success per provider (errors are redacted when recorded)."""

    list_display = ("provider", "last_error_at", "last_error", "last_ok_at", "orphans")
    readonly_fields = ("provider", "last_error", "last_error_at", "last_ok_at", "orphans")

    @admin.display(description="orphans (last sweep)")
    def orphans(self, obj: ProviderStatus) -> str:
        """What the last orphan sweep found at this provider (services_app/services/orphans.py)."""
        from services_app.services.orphans import orphans_last_sweep

        sweep = orphans_last_sweep() or {}
        entry = (sweep.get("providers") or {}).get(obj.provider)
        if entry is None:
            return (sweep.get("errors") or {}).get(obj.provider, "")
        found = entry.get("orphans") or []
        if not found:
            return f"none ({entry.get('listed', 0)} listed, {sweep.get('at', '')})"
        names = ", ".join(f"{o['name']} ({o['resourceId']})" for o in found[:20])
        return f"{len(found)}, {entry.get('deleted', 0)} deleted: {names}" + (" ..." if len(found) > 20 else "")

    def has_change_permission(self, request, obj=None) -> bool:
        return False
