"""Services database: infra and external resources per instance. Never read by the pool directly."""
from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class InstanceInfra(models.Model):
    """Where an instance runs. Provider-neutral: Railway ids have their own columns (seed 002);
    other providers keep what they need in `provider_state` (the local one: pid, port, data dir)."""

    instance_id = models.CharField(primary_key=True, max_length=32)
    provider = models.CharField(max_length=32)
    railway_project_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    railway_service_id = models.CharField(max_length=64, blank=True, default="")
    railway_environment_id = models.CharField(max_length=64, blank=True, default="")
    image_tag = models.CharField(max_length=300, blank=True, default="")
    url = models.URLField(max_length=500, blank=True, default="")  # source of truth for the instance URL
    provider_state = models.JSONField(default=dict, blank=True)
    # Per-instance secrets are never stored in plaintext: the gateway token is derived from
    # INSTANCE_SECRET_KEY and this nonce; the services token is kept as a SHA-256 hash.
    secret_nonce = models.CharField(max_length=64)
    instance_services_token_hash = models.CharField(max_length=64, db_index=True)
    last_error = models.TextField(blank=True, default="")
    # Self-provisioning (the instance asking for a tool with its own token) is allowed only while
    # it is bound to a claim, and only for the tools the claim granted; a reset clears both.
    bound_at = models.DateTimeField(null=True, blank=True)
    self_provision_tools = models.JSONField(default=list, blank=True)
    # The runtime kind the instance reports (its /pool/health `runtime`), learned the first time a
    # call depends on it (services_app/runtime_kinds.py); blank until then.
    runtime_kind = models.CharField(max_length=32, blank=True, default="")
    # A model a claim switched the instance to by restarting it (hermes: HERMES_MODEL); blank: the
    # model it booted with. A reset switches it back.
    runtime_model = models.CharField(max_length=200, blank=True, default="")
    # The provider's deploy status (Railway's DeploymentStatus vocabulary, blank: never asked) as
    # last read, and when it last changed: status_batch asks the provider only about instances this does not vouch
    # for (services_app/services/infra.py). Written with bulk_update, which leaves updated_at alone:
    # updated_at moving is what marks an instance as recently changed.
    deploy_status = models.CharField(max_length=32, blank=True, default="")
    deploy_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the instance was torn down while some resource could not be destroyed yet: the row
    # stays (with those resources) until the tick's retry finishes them.
    torn_down_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instance_infra"
        ordering = ["created_at"]
        verbose_name_plural = "instance infra"

    def __str__(self) -> str:
        return f"{self.instance_id} on {self.provider}"


def new_resource_id() -> str:
    return uuid.uuid4().hex


class ResourceStatus(models.TextChoices):
    ACTIVE = "active", "active"
    USER_PROVIDED = "user_provided", "user provided"
    DESTROY_FAILED = "destroy_failed", "destroy failed"  # the tick retries it
    DESTROYED = "destroyed", "destroyed"


class InstanceService(models.Model):
    """One external resource (a key, an inbox, a number, a wallet) held by an instance."""

    id = models.CharField(primary_key=True, max_length=40, default=new_resource_id, editable=False)
    # PROTECT: the infra row cannot be removed while a resource of the instance is still recorded,
    # so an instance is never forgotten while it holds something outside.
    instance = models.ForeignKey(InstanceInfra, on_delete=models.PROTECT, related_name="resources", db_column="instance_id")
    tool_id = models.CharField(max_length=32, db_index=True)
    resource_id = models.CharField(max_length=200)
    config = models.JSONField(default=dict, blank=True)  # non-secret, tool-specific
    status = models.CharField(max_length=32, choices=ResourceStatus.choices, default=ResourceStatus.ACTIVE)
    last_error = models.TextField(blank=True, default="")
    provisioned_at = models.DateTimeField(default=timezone.now)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instance_services"
        ordering = ["provisioned_at"]

    def __str__(self) -> str:
        return f"{self.instance_id}/{self.tool_id}:{self.resource_id}"


class ProviderStatus(models.Model):
    """Last outcome per external provider (railway, local, openrouter, email, ...), for operators."""

    provider = models.CharField(primary_key=True, max_length=32)
    last_error = models.TextField(blank=True, default="")  # redacted: never a secret
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "provider_status"
        verbose_name_plural = "provider status"

    def __str__(self) -> str:
        return self.provider
