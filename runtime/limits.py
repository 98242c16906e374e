"""Field limits of the agent's protocol, owned here because the runtime is what finally accepts
(or refuses) them; the pool API, services, templates and the runtime's own validation all read
these. Standard library only: the image ships runtime/ alone."""

AGENT_NAME_MAX = 200
INSTRUCTIONS_MAX = 100_000
MODEL_NAME_MAX = 200
JOIN_URL_MAX = 500
CHAT_TEXT_MAX = 10_000  # one message to the agent (POST /agent/messages, services' chat relay)
SENDER_NAME_MAX = 100
CREDENTIAL_VALUE_MAX = 8192
PROFILE_IMAGE_MAX = 2000  # a URL
METADATA_KEYS_MAX = 20  # string map published into the agent's Convos profile
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 500
SOURCE_MAX = 64  # where a claim came from ("landing", ...): recorded only

# Production's defaults for a claim that names neither (its landing page sends only a joinUrl), and
# the name the production image is booted with.
DEFAULT_AGENT_NAME = "Assistant"
DEFAULT_INSTRUCTIONS = "You are a helpful AI assistant."
