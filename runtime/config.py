"""Runtime configuration, read from environment variables only.

The pool starts instances with nothing but an environment (locally through a
subprocess, remotely through the hosting provider), so env vars are the whole
configuration surface. Parsing is strict: a typo in a knob should stop the
process at start instead of silently changing behaviour.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"
DEFAULT_DATA_DIR = "/data"

# Invite links are served by a different Convos web host per XMTP network.
INVITE_HOSTS: dict[str, str] = {
    "dev": "dev.convos.org",
    "staging": "dev.convos.org",
    "production": "popup.convos.org",
}

_TRUTHY = {"1", "true", "yes", "on"}
_FALSY = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """An environment variable holds a value the runtime cannot use."""


@dataclass(frozen=True)
class Config:
    port: int
    host: str
    instance_id: str
    gateway_token: str | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    xmtp_env: str = "dev"
    boot_seconds: float = 0.0
    join_pending_seconds: float = 0.0
    fail_provision: bool = False
    provision_delay_seconds: float = 0.0
    primary_model: str | None = None
    channel: str = "loopback"
    convos_bin: str = "convos"
    llm_url: str | None = None
    join_wait_seconds: float = 20.0

    def __repr__(self) -> str:  # never expose the gateway token
        return (
            f"Config(port={self.port!r}, host={self.host!r}, "
            f"instance_id={self.instance_id!r}, "
            f"gateway_token={'<set>' if self.gateway_token else None}, "
            f"data_dir={str(self.data_dir)!r}, xmtp_env={self.xmtp_env!r}, "
            f"boot_seconds={self.boot_seconds!r}, "
            f"join_pending_seconds={self.join_pending_seconds!r}, "
            f"fail_provision={self.fail_provision!r}, "
            f"provision_delay_seconds={self.provision_delay_seconds!r}, "
            f"primary_model={self.primary_model!r}, channel={self.channel!r}, "
            f"convos_bin={self.convos_bin!r}, llm_url={self.llm_url!r}, "
            f"join_wait_seconds={self.join_wait_seconds!r})"
        )

    @property
    def invite_host(self) -> str:
        return INVITE_HOSTS[self.xmtp_env]


def _get(env: Mapping[str, str], name: str) -> str | None:
    """Return the stripped value, treating empty as unset (shells and .env
    files commonly export ``NAME=`` to mean "not configured")."""
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _parse_port(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"PORT must be an integer, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"PORT must be between 1 and 65535, got {port}")
    return port


def _parse_seconds(name: str, raw: str | None) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


def _parse_bool(name: str, raw: str | None) -> bool:
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in _TRUTHY:
        return True
    if lowered in _FALSY:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from ``env`` (defaults to ``os.environ``)."""
    env = os.environ if env is None else env

    xmtp_env = (_get(env, "XMTP_ENV") or "dev").lower()
    if xmtp_env not in INVITE_HOSTS:
        raise ConfigError(
            f"XMTP_ENV must be one of {', '.join(sorted(INVITE_HOSTS))}, got {xmtp_env!r}"
        )

    data_dir = (
        _get(env, "RUNTIME_DATA_DIR")
        or _get(env, "RAILWAY_VOLUME_MOUNT_PATH")
        or DEFAULT_DATA_DIR
    )

    return Config(
        port=_parse_port(_get(env, "PORT")),
        host=_get(env, "HOST") or DEFAULT_HOST,
        instance_id=_get(env, "INSTANCE_ID") or "local",
        gateway_token=_get(env, "GATEWAY_TOKEN"),
        data_dir=Path(data_dir),
        xmtp_env=xmtp_env,
        boot_seconds=_parse_seconds("RUNTIME_BOOT_SECONDS", _get(env, "RUNTIME_BOOT_SECONDS")),
        join_pending_seconds=_parse_seconds(
            "RUNTIME_JOIN_PENDING_SECONDS", _get(env, "RUNTIME_JOIN_PENDING_SECONDS")
        ),
        fail_provision=_parse_bool("RUNTIME_FAIL_PROVISION", _get(env, "RUNTIME_FAIL_PROVISION")),
        provision_delay_seconds=_parse_seconds(
            "RUNTIME_PROVISION_DELAY_SECONDS", _get(env, "RUNTIME_PROVISION_DELAY_SECONDS")
        ),
        primary_model=_get(env, "OPENCLAW_PRIMARY_MODEL"),
        channel=_parse_channel(_get(env, "RUNTIME_CHANNEL")),
        convos_bin=_get(env, "CONVOS_BIN") or "convos",
        llm_url=_get(env, "OPENROUTER_API_URL"),
        # How long a join waits for the owner's acceptance before answering pending (the pool's
        # provision call allows PROVISION_TIMEOUT_S, 75 s by default, for the whole claim).
        join_wait_seconds=_parse_seconds("RUNTIME_JOIN_WAIT_SECONDS", _get(env, "RUNTIME_JOIN_WAIT_SECONDS") or "20"),
    )


CHANNELS = ("convos", "loopback")


def _parse_channel(raw: str | None) -> str:
    # Unset: loopback (a bare `python -m runtime` needs nothing else); the image sets convos.
    channel = (raw or "loopback").lower()
    if channel not in CHANNELS:
        raise ConfigError(f"RUNTIME_CHANNEL must be one of {', '.join(CHANNELS)}, got {raw!r}")
    return channel
