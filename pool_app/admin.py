"""The operators' fleet dashboard.

Every action here is thin: it calls one operator service (pool_app.services.operations) with the
actor "admin" and reports with `message_user`, exactly as the REST endpoints and the management
commands do. Nothing in admin writes an instance's status itself.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode
from django.utils.html import format_html, format_html_join

from convos.errors import DomainError
from pool_app.config import OVERRIDABLE, pool_settings_get, pool_settings_update
from pool_app.models import (
    Actor,
    ApiClient,
    ClaimRequest,
    Instance,
    InstanceEvent,
    PoolSettings,
    PoolSettingsChange,
    PoolState,
)
from pool_app.services.api_clients import api_client_create, api_client_revoke
from pool_app.services.operations import (
    MAX_PER_REQUEST,
    OperationResult,
    instance_destroy_one,
    instance_recheck,
    instance_redeploy_one,
    pool_drain,
    pool_redeploy_idle,
    pool_replenish,
)

from pool_app.db import DB
from services_app import facade as services

INSTANCE_PAGE_EVENTS = 100  # the instance page's timeline: newest first, bounded


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) if ids else "none"


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, result: OperationResult) -> None:
    """One message per outcome: what was done (or would be), then every failure as a warning."""
    if result.dry_run:
        modeladmin.message_user(
            request, f"Dry run, nothing changed: {result.action} would affect {len(result.instance_ids)} "
                     f"instance(s): {_ids(result.instance_ids)}", messages.INFO)
    elif result.instance_ids:
        modeladmin.message_user(
            request, f"{result.action}: {len(result.instance_ids)} instance(s): {_ids(result.instance_ids)}", messages.SUCCESS)
    elif not result.failed:
        modeladmin.message_user(request, f"{result.action}: no instance affected", messages.INFO)
    if result.note:
        modeladmin.message_user(request, f"{result.action}: {result.note}", messages.WARNING)
    for instance_id, error in result.failed.items():
        modeladmin.message_user(request, f"{result.action} failed for {instance_id}: {error}", messages.WARNING)


# --- instances -------------------------------------------------------------------------------------
@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "deploy_status", "agent_name", "url", "protected", "created_at", "claimed_at", "last_error")
    list_filter = ("status", "deploy_status", "protected")
    search_fields = ("id", "agent_name", "conversation_id", "owner_id", "template_id")
    date_hierarchy = "created_at"
    readonly_fields = tuple(
        f.name for f in Instance._meta.get_fields() if f.concrete and f.name not in ("protected",)
    )
    list_per_page = 100
    actions = ("destroy_selected", "redeploy_selected", "recheck_selected")
    # The instance page: health, actions, infra (from services, through the facade) and timeline.
    change_form_template = "admin/pool_app/instance/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # instances are created by the pool, never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Instance | None = None) -> bool:
        # Deleting the row would orphan whatever runs for it (and skip the event log): instances
        # go away through the "Destroy" action, which tears the infra down first.
        return False

    def has_destroy_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and request.method == "GET":
            # Services' view of it, never a secret (facade.instance_info); unreachable is shown, not raised.
            try:
                infra, infra_error = services.instance_info(obj.pk), ""
            except services.ServicesError as exc:
                infra, infra_error = None, exc.message
            actions = []
            if obj.status != "deleted":
                # Each button posts the changelist's own action, so destroy shows its confirmation page.
                if self.has_destroy_permission(request):
                    actions.append(("destroy_selected", "Destroy…"))
                if self.has_change_permission(request, obj):
                    actions += [("redeploy_selected", "Redeploy"), ("recheck_selected", "Recheck now")]
            extra_context.update({
                "instance_events": InstanceEvent.objects.using(DB).filter(instance_id=obj.pk)[:INSTANCE_PAGE_EVENTS],
                "instance_events_limit": INSTANCE_PAGE_EVENTS,
                "instance_infra": infra,
                "instance_infra_error": infra_error,
                "instance_actions": actions,
                "instance_actions_url": f"{reverse('admin:pool_app_instance_changelist')}?{urlencode({'id__exact': obj.pk})}",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            })
        return super().change_view(request, object_id, form_url, extra_context)

    def _each(self, request: HttpRequest, queryset: QuerySet, action: str, run: Callable[[str], Any]) -> None:
        """Run one service per selected instance; refusals (protected, being claimed, gone) are warnings."""
        done: list[str] = []
        for instance_id in queryset.values_list("pk", flat=True):
            try:
                outcome = run(instance_id)
            except DomainError as exc:
                self.message_user(request, f"{action} refused for {instance_id}: {exc.message}", messages.WARNING)
                continue
            if isinstance(outcome, OperationResult):
                for failed_id, error in outcome.failed.items():
                    self.message_user(request, f"{action} failed for {failed_id}: {error}", messages.WARNING)
                done += outcome.instance_ids
            else:
                done.append(instance_id)
        if done:
            self.message_user(request, f"{action}: {len(done)} instance(s): {_ids(done)}", messages.SUCCESS)

    @admin.action(description="Destroy selected instances", permissions=["destroy"])
    def destroy_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            # Nothing is destroyed before the operator has seen the list and confirmed it.
            instances = list(queryset.order_by("created_at"))
            return TemplateResponse(request, "admin/pool_app/instance/confirm_destroy.html", {
                **self.admin_site.each_context(request),
                "title": "Destroy instances: are you sure?",
                "opts": self.opts,
                "objects": instances,
                "protected_ids": {i.pk for i in instances if i.is_protected},
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "action_name": "destroy_selected",
                "media": self.media,
            })
        self._each(request, queryset, "destroy", lambda pk: instance_destroy_one(instance_id=pk, actor=Actor.ADMIN))
        return None

    @admin.action(description="Redeploy selected instances", permissions=["change"])
    def redeploy_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "redeploy", lambda pk: instance_redeploy_one(instance_id=pk, actor=Actor.ADMIN))

    @admin.action(description="Recheck selected instances now", permissions=["change"])
    def recheck_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "recheck", lambda pk: instance_recheck(instance_id=pk, actor=Actor.ADMIN))


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# The admin's front page is the fleet dashboard, above the app list (pool_app/dashboard.py).
admin.site.index_template = "admin/pool_app/fleet_index.html"
admin.site.site_header = "Convos agent pool"
admin.site.site_title = "Convos agent pool"


@admin.register(InstanceEvent)
class InstanceEventAdmin(_ReadOnlyAdmin):  # the event log is a record: read-only
    list_display = ("created_at", "instance_id", "from_status", "to_status", "actor", "reason")
    list_filter = ("actor", "to_status", "from_status")
    search_fields = ("instance_id", "reason")
    date_hierarchy = "created_at"
    list_per_page = 200


# --- pool settings and pool-wide operations --------------------------------------------------------
class ReplenishForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=MAX_PER_REQUEST, initial=1, help_text="Instances to create now, within POOL_MAX_TOTAL")


class DrainForm(forms.Form):
    count = forms.IntegerField(min_value=1, max_value=MAX_PER_REQUEST, initial=1, help_text="Idle instances to destroy, oldest first; protected ones never")
    dry_run = forms.BooleanField(required=False, initial=True, help_text="Only list what would be drained")


class RedeployIdleForm(forms.Form):
    dry_run = forms.BooleanField(required=False, initial=True, help_text="Only list what would be redeployed")


# name -> (title, form, the one service it calls). Destructive ones start with dry run ticked.
POOL_OPERATIONS: dict[str, tuple[str, type[forms.Form], Callable[[dict[str, Any]], OperationResult]]] = {
    "replenish": ("Replenish", ReplenishForm,
                  lambda data: pool_replenish(count=data["count"], actor=Actor.ADMIN)),
    "drain": ("Drain idle instances", DrainForm,
              lambda data: pool_drain(count=data["count"], dry_run=data["dry_run"], actor=Actor.ADMIN)),
    "redeploy-idle": ("Redeploy all idle instances", RedeployIdleForm,
                      lambda data: pool_redeploy_idle(dry_run=data["dry_run"], actor=Actor.ADMIN)),
}


@admin.register(PoolSettings)
class PoolSettingsAdmin(admin.ModelAdmin):
    """One row: the changelist opens it, saving goes through pool_settings_update (which logs who
    changed what), and its page carries the pool-wide operations."""

    fields = ("min_idle", "max_total", "stuck_timeout_ms", "create_concurrency", "paused", "updated_at", "recent_changes")
    readonly_fields = ("updated_at", "recent_changes")
    change_form_template = "admin/pool_app/poolsettings/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not PoolSettings.objects.using(DB).filter(pk=1).exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs: Any):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name in OVERRIDABLE and formfield is not None:
            setting = OVERRIDABLE[db_field.name]
            formfield.help_text = f"Empty: the environment's {setting} = {getattr(settings, setting)}"
        return formfield

    @admin.display(description="Recent changes")
    def recent_changes(self, obj: PoolSettings) -> str:
        changes = PoolSettingsChange.objects.using(DB).all()[:10]
        rows = format_html_join(
            "\n", "<div>{} · {}: {} → {} · {}</div>",
            ((c.changed_at.strftime("%Y-%m-%d %H:%M:%S"), c.field, c.old_value or "-", c.new_value or "-", c.changed_by) for c in changes),
        )
        url = reverse("admin:pool_app_poolsettingschange_changelist")
        return format_html('{}<div><a href="{}">All changes</a></div>', rows or "none yet", url)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> PoolSettings | None:
        # The one row, or its unsaved defaults when it does not exist yet: saving creates it.
        return pool_settings_get() if str(object_id) == "1" else None

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if not PoolSettings.objects.using(DB).filter(pk=1).exists():
            # Creating the (empty) row also goes through the service; with no values it logs nothing.
            pool_settings_update(changed_by=request.user.get_username())
        return HttpResponseRedirect(reverse("admin:pool_app_poolsettings_change", args=[1]))

    def save_model(self, request: HttpRequest, obj: PoolSettings, form: forms.ModelForm, change: bool) -> None:
        # Only the fields the operator changed, so a concurrent change of another field (CLI) stands.
        values = {name: form.cleaned_data[name] for name in form.changed_data if name in (*OVERRIDABLE, "paused")}
        pool_settings_update(changed_by=request.user.get_username(), **values)
        obj.refresh_from_db(using=DB)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if self.has_change_permission(request):
            extra_context["pool_operations"] = [
                (name, title, form(prefix=name.replace("-", "_")), reverse("admin:pool_app_poolsettings_operation", args=[name]))
                for name, (title, form, _) in POOL_OPERATIONS.items()
            ]
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        return [
            path("operation/<slug:name>/", self.admin_site.admin_view(self.operation_view), name="pool_app_poolsettings_operation"),
            *super().get_urls(),
        ]

    def operation_view(self, request: HttpRequest, name: str) -> HttpResponse:
        """POST one pool-wide operation's form; calls its one service and goes back to the settings page."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:pool_app_poolsettings_change", args=[1]))
        if name not in POOL_OPERATIONS:
            self.message_user(request, f"Unknown pool operation {name!r}", messages.ERROR)
            return back
        if request.method != "POST":
            return back
        title, form_class, run = POOL_OPERATIONS[name]
        form = form_class(request.POST, prefix=name.replace("-", "_"))
        if not form.is_valid():
            errors = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in form.errors.items())
            self.message_user(request, f"{title}: {errors}", messages.ERROR)
            return back
        try:
            result = run(form.cleaned_data)
        except DomainError as exc:
            self.message_user(request, f"{title} refused: {exc.message}", messages.WARNING)
            return back
        _report(self, request, result)
        return back


@admin.register(PoolSettingsChange)
class PoolSettingsChangeAdmin(_ReadOnlyAdmin):
    list_display = ("changed_at", "field", "old_value", "new_value", "changed_by")
    list_filter = ("field", "changed_by")
    search_fields = ("changed_by",)
    date_hierarchy = "changed_at"


@admin.register(PoolState)
class PoolStateAdmin(_ReadOnlyAdmin):
    list_display = ("id", "last_tick_at", "outage", "outage_reason", "outage_since")
    fields = ("last_tick_at", "outage", "outage_reason", "outage_since", "report")
    readonly_fields = fields

    @admin.display(description="Last tick report")
    def report(self, obj: PoolState) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.last_tick_report, indent=2, sort_keys=True))


@admin.register(ClaimRequest)
class ClaimRequestAdmin(_ReadOnlyAdmin):
    list_display = ("created_at", "owner_key", "idempotency_key", "state", "instance_id")
    list_filter = ("state",)
    search_fields = ("owner_key", "idempotency_key", "instance_id")
    date_hierarchy = "created_at"
    fields = ("owner_key", "idempotency_key", "state", "instance_id", "created_at", "response")
    readonly_fields = fields


class ApiClientCreateForm(forms.ModelForm):
    class Meta:
        model = ApiClient
        fields = ("name", "owner_id", "rate_limit_per_minute")


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Clients are created through api_client_create; the key is shown once, on a page of its own
    (never in a message: those are stored in a cookie), and only its hash is kept."""

    list_display = ("name", "owner_id", "key_prefix", "rate_limit_per_minute", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "owner_id", "key_prefix")
    actions = ["revoke_selected"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiClientCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("name", "owner_id", "key_prefix", "created_at", "last_used_at", "revoked_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "owner_id", "rate_limit_per_minute")
        return ("name", "owner_id", "key_prefix", "rate_limit_per_minute", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request, obj, form, change) -> None:
        if change:
            ApiClient.objects.using(DB).filter(pk=obj.pk).update(rate_limit_per_minute=obj.rate_limit_per_minute)
            return
        created = api_client_create(name=obj.name, owner_id=obj.owner_id, rate_limit_per_minute=obj.rate_limit_per_minute)
        obj.pk = created.client.pk
        obj.key_prefix, obj.key_hash, obj.created_at = created.client.key_prefix, created.client.key_hash, created.client.created_at
        request._new_api_key = created.key  # for response_add, this request only

    def response_add(self, request, obj, post_url_continue=None) -> HttpResponse:
        key = getattr(request, "_new_api_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(request, "admin/pool_app/apiclient/key_created.html", {
            **self.admin_site.each_context(request), "title": "API key created", "opts": self.opts, "client": obj, "key": key,
        })
        response["Cache-Control"] = "no-store"  # never kept by a browser or a proxy
        return response

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the record of who made what stays

    @admin.action(description="Revoke selected clients' keys", permissions=["change"])
    def revoke_selected(self, request, queryset) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            return TemplateResponse(request, "admin/pool_app/apiclient/confirm_revoke.html", {
                **self.admin_site.each_context(request), "title": "Revoke keys: are you sure?", "opts": self.opts,
                "objects": list(queryset.order_by("name")), "action_name": "revoke_selected",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME, "media": self.media,
            })
        for client in queryset:
            api_client_revoke(client_id=client.pk)
        self.message_user(request, f"Revoked {queryset.count()} client(s)", messages.SUCCESS)
        return None
