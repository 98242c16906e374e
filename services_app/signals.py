"""Signals services sends for other apps to record, so services never imports them.

`self_provision_requested`: an instance asked for a tool with its own token. Sent for every such
call, refused ones included, with `instance_id`, `tool_id`, `outcome` ("provisioned", "existing"
or "refused") and `detail` (why, never a secret). The pool records it in its event log.
"""
from django.dispatch import Signal

self_provision_requested = Signal()
