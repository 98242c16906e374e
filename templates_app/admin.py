"""Templates in the operators' admin.

Saving and deleting go through the same services as the API (as the operator), and the form checks
model and tools with the API's own validation, so a template typed in here can always be claimed.
The "instances" column asks the pool once per changelist page (pool_app.selectors), never per row.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from convos.auth import OPERATOR
from convos.errors import DomainError, NotFound
from pool_app.models import Actor
from pool_app.selectors import instance_counts_by_template
from pool_app.services.templates import template_sync  # the pool owns its instances
from templates_app.models import AgentTemplate
from templates_app.services import EDITABLE_FIELDS, template_create, template_delete, template_update
from templates_app.validation import MAX_INSTRUCTIONS, model_problems, tools_problems

from templates_app.db import DB
MAX_CREATOR_CHOICES = 100  # the filter lists this many creators; search finds the others


class AgentTemplateForm(forms.ModelForm):
    class Meta:
        model = AgentTemplate
        fields = ("agent_name", "creator_id", "visibility", "instructions", "model", "tools")
        help_texts = {
            "creator_id": "Owner id (inbox id) of the creator. Empty: the operator.",
            "model": '{"default": "<model id, empty for the pool default>", "allow_override": false}',
            "tools": '[{"id": "email", "provisioning": "pool"}] — "pool": the pool\'s account, "user": the claimer\'s credentials',
        }

    def clean_instructions(self) -> str:
        value = self.cleaned_data.get("instructions") or ""
        if len(value) > MAX_INSTRUCTIONS:
            raise forms.ValidationError(f"At most {MAX_INSTRUCTIONS} characters (got {len(value)}).")
        return value

    def clean_model(self) -> Any:
        value = self.cleaned_data.get("model")
        problems = model_problems(value)
        if problems:
            raise forms.ValidationError(problems)
        return value

    def clean_tools(self) -> Any:
        value = self.cleaned_data.get("tools")
        if value is None:
            return []  # an emptied textarea: no tools
        try:
            problems = tools_problems(value)
        except DomainError as exc:  # the services registry is unreachable
            raise forms.ValidationError(exc.message) from None
        if problems:
            raise forms.ValidationError([f"{where}: {message}" for where, messages in problems.items() for message in messages])
        return value


class CreatorFilter(admin.SimpleListFilter):
    title = "creator"
    parameter_name = "creator"
    NONE = "__none__"  # templates without a creator (the query string cannot carry an empty choice)

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        creators = (
            AgentTemplate.objects.using(DB).order_by("creator_id").values_list("creator_id", flat=True).distinct()
        )[:MAX_CREATOR_CHOICES]
        return [(creator or self.NONE, creator or "(none)") for creator in creators]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(creator_id="" if value == self.NONE else value)


@admin.register(AgentTemplate)
class AgentTemplateAdmin(admin.ModelAdmin):
    form = AgentTemplateForm
    list_display = ("id", "agent_name", "visibility", "creator_id", "instances", "created_at", "updated_at")
    list_filter = ("visibility", CreatorFilter)
    search_fields = ("id", "agent_name", "instructions", "creator_id")
    date_hierarchy = "created_at"
    list_per_page = 100
    actions = ["push_to_instances"]

    @admin.action(description="Push name and instructions to the instances claimed from them", permissions=["change"])
    def push_to_instances(self, request: HttpRequest, queryset: QuerySet) -> None:

        for template in queryset:
            result = template_sync(template_id=template.pk, actor=Actor.ADMIN)
            self.message_user(request, f"{template.agent_name}: synced {len(result['synced'])} instance(s)", messages.SUCCESS)
            for instance_id, error in result["failed"].items():
                self.message_user(request, f"{template.agent_name}: instance {instance_id} failed to sync: {error}", messages.WARNING)

    def get_readonly_fields(self, request: HttpRequest, obj: AgentTemplate | None = None) -> tuple[str, ...]:
        # The creator is chosen when the template is made; after that it is who owns it.
        return ("id", "created_at", "updated_at") + (("creator_id",) if obj is not None else ())

    def get_fields(self, request: HttpRequest, obj: AgentTemplate | None = None) -> tuple[str, ...]:
        fields = ("agent_name", "creator_id", "visibility", "instructions", "model", "tools")
        return (("id",) + fields + ("created_at", "updated_at")) if obj is not None else fields

    def get_changelist_instance(self, request: HttpRequest):
        changelist = super().get_changelist_instance(request)
        # Evaluating the page's queryset here caches its rows; the changelist renders these same
        # objects, so one query to the pool database serves the whole page.
        page = list(changelist.result_list)
        counts = instance_counts_by_template([t.pk for t in page]) if page else {}
        for template in page:
            template.instance_count = counts.get(template.pk, 0)
        return changelist

    @admin.display(description="Instances")
    def instances(self, obj: AgentTemplate) -> str:
        count = getattr(obj, "instance_count", None)
        if count is None:  # outside the changelist
            count = instance_counts_by_template([obj.pk]).get(obj.pk, 0)
        try:
            url = reverse("admin:pool_app_instance_changelist") + "?" + urlencode({"template_id": obj.pk})
        except NoReverseMatch:
            return str(count)
        return format_html('<a href="{}">{}</a>', url, count)

    def save_model(self, request: HttpRequest, obj: AgentTemplate, form: forms.ModelForm, change: bool) -> None:
        values = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS if name in form.cleaned_data}
        if change:
            changed = {name: value for name, value in values.items() if name in form.changed_data}
            saved = template_update(template_id=obj.pk, viewer=OPERATOR, data=changed)
        else:
            saved = template_create(viewer=OPERATOR, data=values, creator_id=form.cleaned_data.get("creator_id") or None)
        for field in AgentTemplate._meta.concrete_fields:  # the admin's redirect and log use `obj`
            setattr(obj, field.attname, getattr(saved, field.attname))

    def delete_model(self, request: HttpRequest, obj: AgentTemplate) -> None:
        template_delete(template_id=obj.pk, viewer=OPERATOR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for template_id in queryset.values_list("pk", flat=True):
            try:
                template_delete(template_id=template_id, viewer=OPERATOR)
            except NotFound:
                pass  # deleted meanwhile: the goal is reached
