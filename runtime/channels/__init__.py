"""How the agent talks: one interface (`base.Channel`), two implementations.

- `convos`: the official Convos CLI as child processes (the image's default).
- `loopback`: no network; a person talks to the agent through the runtime's HTTP API (the local
  provider's default, so `make run` gives a new user an agent to talk to).

`RUNTIME_CHANNEL` picks one.
"""
from __future__ import annotations

from runtime.channels.base import Bound, Channel, ChannelError

__all__ = ["Bound", "Channel", "ChannelError", "make_channel"]


def make_channel(name: str, **kwargs) -> Channel:
    if name == "convos":
        from runtime.channels.convos import ConvosChannel

        return ConvosChannel(**kwargs)
    if name == "loopback":
        from runtime.channels.loopback import LoopbackChannel

        return LoopbackChannel(**kwargs)
    raise ValueError(f"unknown channel {name!r}")
