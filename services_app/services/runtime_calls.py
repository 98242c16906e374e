"""Calls into a running instance's pool-mode server (configure = its /pool/provision)."""
from __future__ import annotations

from typing import Any

import logging

from django.conf import settings
from django.utils import timezone

from convos.concurrency import map_with_deadline
from convos.redaction import redact
from services_app import runtime_client, runtime_kinds
from services_app.models import InstanceInfra, InstanceService
from services_app.services.errors import ServicesError
from services_app.services.infra import gateway_token, live_infra
from services_app.services.teardown import destroy_claim_resources
from services_app.services.tools import ENV_NAMES

logger = logging.getLogger(__name__)
from services_app.db import DB


def _runtime_error(instance_id: str, exc: runtime_client.RuntimeCallError) -> ServicesError:
    if exc.status_code == 409:
        return ServicesError(f"Instance {instance_id} is already bound to a conversation", code="already_bound", status_code=409)
    return ServicesError(f"Instance {instance_id}: {redact(exc.message)}", code="runtime_failed")


def instance_configure(
    *,
    instance_id: str,
    agent_name: str,
    instructions: str,
    join_url: str | None = None,
    model: str | None = None,
    profile_image: str | None = None,
    metadata: dict[str, str] | None = None,
    update: bool = False,
    self_provision_tools: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Push name, instructions (and model) to the running instance and bind it to a conversation;
    returns `{ok, conversationId, inviteUrl, joined, status}` from the instance's answer.

    Once the instance accepted the binding, it may provision `self_provision_tools` for itself
    (its own token, one of each) until a reset.

    The model travels in the provision body (`model`), not in the metadata (which the Convos
    runtime publishes into the agent's profile), and not as a variable: changing the instance's
    variables would restart it, which a claim must not wait for. With `update`, an instance that is already bound gets the
    new name and instructions (a template sync) and keeps its conversation.

    The production image (kinds openclaw, hermes: services_app/runtime_kinds.py) reads no model
    from the body: hermes is restarted with HERMES_MODEL once bound, when the claim's model is not
    the one it runs; openclaw keeps the model it booted with. It has no update route, and no
    variable carries a name or instructions: a template sync there answers 501."""
    infra = live_infra(instance_id)
    kind = runtime_kinds.instance_kind(infra) if (update or model) else None
    if update and kind is not None and not kind.update_route:
        raise ServicesError(f"Instance {instance_id} runs {kind.name}, which cannot take a new name and instructions while "
                            "bound (no update route, and a restart's variables do not carry them)",
                            code="unsupported_by_runtime", status_code=501)
    body: dict[str, Any] = {"agentName": agent_name, "instructions": instructions}
    if join_url:
        body["joinUrl"] = join_url
    if profile_image:
        body["profileImage"] = profile_image
    if metadata:
        body["metadata"] = dict(metadata)  # the client's: the runtime publishes it in the agent's profile
    if model:
        body["model"] = model  # its own field: a model name has no business in a public profile
    try:
        if update:
            body.pop("joinUrl", None)
            status = runtime_client.update_identity(infra.url, token=gateway_token(infra), body=body, timeout=settings.PROVISION_TIMEOUT_S)
            conversation = (status.get("status") or {}).get("conversationId")
            return {"ok": True, "conversationId": conversation, "inviteUrl": None, "joined": False, "status": "updated"}
        answer = runtime_client.provision(infra.url, token=gateway_token(infra), body=body, timeout=settings.PROVISION_TIMEOUT_S)
    except runtime_client.RuntimeCallError as exc:
        raise _runtime_error(instance_id, exc) from exc
    InstanceInfra.objects.using(DB).filter(pk=infra.pk).update(
        bound_at=timezone.now(), self_provision_tools=sorted(set(self_provision_tools)), updated_at=timezone.now())
    if model and kind is not None and not kind.claim_model:
        _switch_model(infra, kind, model)
    return {
        "ok": True,
        "conversationId": answer.get("conversationId"),
        "inviteUrl": answer.get("inviteUrl"),
        "joined": bool(answer.get("joined")),
        "status": answer.get("status") or "created",
    }


def _switch_model(infra: InstanceInfra, kind: runtime_kinds.RuntimeKind, model: str) -> None:
    """Run a claim's model on a kind that reads it only at boot (hermes: HERMES_MODEL), by a restart
    once the instance is bound: one bound to someone else (409) is never restarted. `model=""`
    switches back to the pool's default (OPENCLAW_PRIMARY_MODEL, what it booted with)."""
    default = settings.OPENCLAW_PRIMARY_MODEL
    if not kind.model_variable:
        if model != default:
            logger.warning("instance %s runs %s, which takes no per-claim model: it keeps its own", infra.instance_id, kind.name)
        return
    if (model or default) == (infra.runtime_model or default):
        return
    try:
        runtime_client.restart(infra.url, token=gateway_token(infra), env={kind.model_variable: model or default},
                               timeout=settings.PROVISION_TIMEOUT_S)
    except runtime_client.RuntimeCallError as exc:
        raise _runtime_error(infra.instance_id, exc) from exc
    infra.runtime_model = "" if model in ("", default) else model
    InstanceInfra.objects.using(DB).filter(pk=infra.pk).update(runtime_model=infra.runtime_model, updated_at=timezone.now())


def _delivered_names(infra: InstanceInfra) -> list[str]:
    """The names of every variable a claim ever gave the instance (its claim tools' records)."""
    names: set[str] = set()
    for config in InstanceService.objects.using(DB).filter(instance=infra).values_list("config", flat=True):
        names.update((config or {}).get(ENV_NAMES) or [])
    return sorted(names)


def instance_convos_status(*, instance_id: str) -> dict[str, Any]:
    infra = live_infra(instance_id)
    try:
        return runtime_client.convos_status(infra.url, token=gateway_token(infra), timeout=settings.HEALTH_CHECK_TIMEOUT_S * 2)
    except runtime_client.RuntimeCallError as exc:
        raise _runtime_error(instance_id, exc) from exc


def instance_convos_status_batch(*, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """`instance_convos_status` of many instances: one query for their records, then the calls on
    threads that never touch the database (each answer, or {"error": message}), within the tick's
    batch deadline. The tick asks a sample of idle and every claimed instance each time; a thread
    per instance opening its own database connection cost more than the call."""
    infras = list(InstanceInfra.objects.using(DB).filter(instance_id__any=instance_ids, torn_down_at=None))
    timeout = settings.HEALTH_CHECK_TIMEOUT_S * 2

    def ask(infra: InstanceInfra) -> dict[str, Any]:
        try:
            return runtime_client.convos_status(infra.url, token=gateway_token(infra), timeout=timeout)
        except runtime_client.RuntimeCallError as exc:
            return {"error": _runtime_error(infra.instance_id, exc).message}

    answers = map_with_deadline(ask, infras, max_workers=settings.TICK_CALL_CONCURRENCY,
                                deadline_s=settings.HEALTH_CHECK_BATCH_DEADLINE_S, missing={"error": "no answer in time"})
    found = {infra.instance_id: answer for infra, answer in zip(infras, answers)}
    return {i: found.get(i) or {"error": f"Unknown instance {i}"} for i in instance_ids}


# An agent's turn may wait for the model and a few tool calls.
CHAT_TIMEOUT_S = 120.0


def instance_chat(*, instance_id: str, text: str, sender_name: str = "operator") -> dict[str, Any]:
    """Relay a person's message to the instance's agent (loopback channel) and return its replies.
    The gateway token stays inside services: whoever chats never sees it."""
    infra = live_infra(instance_id)
    try:
        replies = runtime_client.agent_message(infra.url, token=gateway_token(infra), text=text, sender_name=sender_name,
                                               timeout=CHAT_TIMEOUT_S)
    except runtime_client.RuntimeCallError as exc:
        if exc.status_code == 409:
            raise ServicesError(f"Instance {instance_id}: {redact(exc.message)}", code="not_chattable", status_code=409) from exc
        raise _runtime_error(instance_id, exc) from exc
    return {"replies": replies}


def instance_reset(*, instance_id: str) -> dict[str, Any]:
    """Factory reset: the claim's resources are destroyed (first, so their credentials are worthless
    even if the instance cannot be reached), its self-provisioning grants withdrawn, then the
    instance wipes its conversation, credentials and instructions. Returns its /convos/status."""
    infra = live_infra(instance_id)
    InstanceInfra.objects.using(DB).filter(pk=infra.pk).update(bound_at=None, self_provision_tools=[], updated_at=timezone.now())
    failed = destroy_claim_resources(infra)
    if failed:
        logger.warning("reset of %s: %s not destroyed yet (retried by the tick)", instance_id, ", ".join(failed))
    try:
        answer = runtime_client.convos_reset(infra.url, token=gateway_token(infra), timeout=settings.PROVISION_TIMEOUT_S)
        _reset_variables(infra)
    except runtime_client.RuntimeCallError as exc:
        raise _runtime_error(instance_id, exc) from exc
    return answer.get("status") or {}


def _reset_variables(infra: InstanceInfra) -> None:
    """On a kind whose claim variables came by restart (its /convos/reset does not touch them):
    restart it once more with every one emptied and its boot model back. Every name any claim ever
    gave is emptied (a retried reset must not miss one), so such an instance restarts at each reset."""
    names = _delivered_names(infra)
    if not names and not infra.runtime_model:
        return
    kind = runtime_kinds.instance_kind(infra)
    if kind.credentials_route or not kind.restart_route:
        return  # this project's runtime: /convos/reset wiped them
    env = {name: "" for name in names}
    if infra.runtime_model and kind.model_variable:
        env[kind.model_variable] = settings.OPENCLAW_PRIMARY_MODEL
    runtime_client.restart(infra.url, token=gateway_token(infra), env=env, timeout=settings.PROVISION_TIMEOUT_S)
    InstanceInfra.objects.using(DB).filter(pk=infra.pk).update(runtime_model="", updated_at=timezone.now())
