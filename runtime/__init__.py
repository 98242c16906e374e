"""Local stand-in for an agent instance's pool-mode HTTP server.

The real instance runs the OpenClaw gateway plus a Convos/XMTP bridge. This
package reproduces only the small HTTP contract the pool manager speaks
(health, provision, status, reset) so the pool can be developed and tested
without the real agent runtime. Run it with ``python -m runtime``.
"""

__version__ = "0.1.0"
