"""Runtime kinds: what creation must give each kind, and what a running instance of it can do.

    convos-python  this project's runtime (runtime/): a per-claim model in the provision body,
                   claim-time credentials on POST /pool/credentials, template sync on POST /pool/update.
    openclaw       the production image (xmtplabs/convos-managed-agent-runtime, RUNTIME_TYPE=openclaw)
    hermes         the same image with RUNTIME_TYPE=hermes

The production image's pool-server has neither /pool/credentials nor /pool/update; it has
POST /pool/restart {env}, which restarts the agent with extra variables. So on those kinds claim-time
tool credentials (and, on hermes, a claim's model as HERMES_MODEL) travel by restart, and a template
sync of name and instructions cannot be done at all (no variable carries them: 501). It boots only
with the variables of PRODUCTION_REQUIRED, and it does not read a per-claim model.

POOL_RUNTIME_KIND names the kind the pool creates. The kind of an existing instance is what its
/pool/health reports as `runtime`, kept on its InstanceInfra row once known (`instance_kind`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from services_app import runtime_client
from services_app.db import DB
from services_app.models import InstanceInfra
from runtime.kinds import CONVOS_PYTHON, HERMES, OPENCLAW
from runtime.limits import DEFAULT_AGENT_NAME

logger = logging.getLogger(__name__)

PRODUCTION_REQUIRED = ("RUNTIME_TYPE", "_RUNTIME_IMAGE", "DEFAULT_AGENT_NAME", "POOL_ENVIRONMENT", "OPENROUTER_API_KEY")
# Instance variable -> the setting it is passed through from (only when set).
PRODUCTION_OPTIONAL = {
    "EXA_API_KEY": "RUNTIME_EXA_API_KEY",
    "CONVOS_API_KEY": "RUNTIME_CONVOS_API_KEY",
    "POSTHOG_API_KEY": "RUNTIME_POSTHOG_API_KEY",
    "POSTHOG_HOST": "RUNTIME_POSTHOG_HOST",
}


@dataclass(frozen=True)
class RuntimeKind:
    name: str
    required: tuple[str, ...] = ()          # creation fails (before any infra) without each of these
    optional: tuple[tuple[str, str], ...] = ()  # (variable, setting) passed through when the setting is set
    credentials_route: bool = False         # POST /pool/credentials {set, remove}
    update_route: bool = False              # POST /pool/update (template sync of name and instructions)
    restart_route: bool = False             # POST /pool/restart {env}
    model_variable: str = ""                # the boot variable naming the model ("" : none)
    claim_model: bool = False               # reads a per-claim model from the provision body

    @property
    def production_image(self) -> bool:
        return self.name in (OPENCLAW, HERMES)


KINDS: dict[str, RuntimeKind] = {
    CONVOS_PYTHON: RuntimeKind(CONVOS_PYTHON, credentials_route=True, update_route=True, claim_model=True),
    OPENCLAW: RuntimeKind(OPENCLAW, required=PRODUCTION_REQUIRED, optional=tuple(PRODUCTION_OPTIONAL.items()), restart_route=True),
    HERMES: RuntimeKind(HERMES, required=PRODUCTION_REQUIRED, optional=tuple(PRODUCTION_OPTIONAL.items()), restart_route=True,
                        model_variable="HERMES_MODEL"),
}


def get(name: str) -> RuntimeKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"Unknown runtime kind {name!r} (one of {', '.join(KINDS)})") from None


def configured() -> RuntimeKind:
    """The kind the pool creates (POOL_RUNTIME_KIND)."""
    return get(settings.POOL_RUNTIME_KIND)


def creation_variables(kind: RuntimeKind) -> dict[str, str]:
    """The variables `kind` needs at creation on top of the common ones (empty values left out)."""
    variables: dict[str, str] = {}
    if kind.production_image:
        variables.update({
            "RUNTIME_TYPE": kind.name,
            "_RUNTIME_IMAGE": settings.RAILWAY_RUNTIME_IMAGE,
            "DEFAULT_AGENT_NAME": DEFAULT_AGENT_NAME,
            "POOL_ENVIRONMENT": settings.XMTP_ENV,
            # Pool-wide fallback: a per-instance key from the openrouter tool replaces it.
            "OPENROUTER_API_KEY": settings.RUNTIME_OPENROUTER_API_KEY,
        })
        variables.update({name: getattr(settings, setting) for name, setting in kind.optional})
    if kind.model_variable and settings.OPENCLAW_PRIMARY_MODEL:
        variables[kind.model_variable] = settings.OPENCLAW_PRIMARY_MODEL
    return {k: v for k, v in variables.items() if v}


def missing(kind: RuntimeKind, variables: dict[str, str], *, still_coming: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The required variables of `kind` absent from `variables` (`still_coming`: provided later)."""
    return [name for name in kind.required if not variables.get(name) and name not in still_coming]


def instance_kind(infra: InstanceInfra) -> RuntimeKind:
    """The kind of a running instance: the one recorded on its row, else what its /pool/health
    reports (then recorded), else POOL_RUNTIME_KIND (an instance not answering, or one reporting
    a kind services does not know, e.g. the fake provider's)."""
    if infra.runtime_kind in KINDS:
        return KINDS[infra.runtime_kind]
    reported = runtime_client.runtime_of(infra.url, timeout=settings.HEALTH_CHECK_TIMEOUT_S)
    if reported in KINDS:
        InstanceInfra.objects.using(DB).filter(pk=infra.pk).update(runtime_kind=reported)
        infra.runtime_kind = reported
        return KINDS[reported]
    return configured()
