"""The runtime kinds the pool knows, as an instance's `/pool/health` reports them (`runtime`): this
project's runtime, and the production image's two. One owner for the names the runtime reports,
services acts on and the pool filters claims by. Standard library only (the image ships runtime/)."""

CONVOS_PYTHON = "convos-python"  # this runtime (runtime/)
OPENCLAW = "openclaw"  # the production image, OpenClaw harness
HERMES = "hermes"  # the production image, Hermes harness
KINDS = (CONVOS_PYTHON, OPENCLAW, HERMES)
