"""The services layer: every operation of the services API (seed 002) is one function here.

The facade the pool uses and the services HTTP views call these and nothing else.
"""
from services_app.services.errors import ServicesError, provider_statuses
from services_app.services.infra import (
    instance_abandon_creation,
    instance_create,
    instance_destroy,
    instance_for_token,
    instance_info,
    instance_redeploy,
    local_fleet_start,
    local_fleet_stop,
    status_batch,
    teardown_retry,
)
from services_app.services.orphans import orphans_last_sweep, orphans_sweep
from services_app.services.runtime_calls import (instance_chat, instance_configure, instance_convos_status, instance_convos_status_batch,
                                                 instance_reset)
from services_app.services.tools import registry, tool_destroy, tool_provision, user_config_check

__all__ = [
    "instance_for_token", "instance_info", "ServicesError", "provider_statuses", "instance_abandon_creation", "instance_create", "instance_destroy", "instance_redeploy", "local_fleet_start",
    "local_fleet_stop", "status_batch", "teardown_retry", "instance_chat", "instance_configure", "instance_convos_status", "instance_convos_status_batch", "instance_reset",
    "registry", "tool_destroy", "tool_provision", "user_config_check", "orphans_sweep", "orphans_last_sweep",
]
