"""Templates database: what an agent becomes at claim time (seed 002, `agent_templates`)."""
from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone

from runtime import limits


def new_template_id() -> str:
    return "tpl_" + secrets.token_hex(8)


def default_model() -> dict:
    return {"default": "", "allow_override": False}


class Visibility(models.TextChoices):
    PRIVATE = "private", "private"
    PUBLIC = "public", "public"


class AgentTemplate(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_template_id, editable=False)
    creator_id = models.CharField(max_length=200, blank=True, default="", db_index=True)
    agent_name = models.CharField(max_length=limits.AGENT_NAME_MAX)
    instructions = models.TextField(blank=True, default="")
    model = models.JSONField(default=default_model, blank=True)  # {"default": "...", "allow_override": bool}
    tools = models.JSONField(default=list, blank=True)  # [{"id": "email", "provisioning": "pool"}]
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "agent_templates"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.agent_name} ({self.id})"
