"""The convos channel end to end: the real runtime (`python -m runtime`, RUNTIME_CHANNEL=convos)
driving `tests/runtime/fake_convos.py` as its `convos` binary, and the OpenAI-compatible stand-in
as its model. The fake speaks what the pinned CLI (0.10.15, runtime/CONVOS_CLI.md) speaks; its
control files live in `<CONVOS_HOME>/fake/`.
"""
from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.llm_standin import StandIn
from tests.runtime.harness import Runtime, RuntimeFactory, _wait_for

FAKE_CONVOS = Path(__file__).resolve().parent / "fake_convos.py"
PERSON = "ab" * 32  # a person's inbox id
MODEL = "test/model-7"


@pytest.fixture
def model() -> Iterator[StandIn]:
    with StandIn() as standin:
        yield standin


@pytest.fixture
def start_convos(start_runtime: RuntimeFactory, model: StandIn):
    def start(**env: str) -> Runtime:
        settings = {"RUNTIME_CHANNEL": "convos", "CONVOS_BIN": str(FAKE_CONVOS), "OPENROUTER_API_URL": model.url,
                    "OPENROUTER_API_KEY": secrets.token_hex(16), "OPENCLAW_PRIMARY_MODEL": MODEL}
        settings.update(env)
        return start_runtime(**settings)

    return start


class Fake:
    """The fake CLI's control and record files for one runtime's CLI home."""

    def __init__(self, runtime: Runtime) -> None:
        self.home = runtime.data_dir / "convos" / "cli"
        self.dir = self.home / "fake"

    def prepare(self) -> Fake:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self

    def calls(self) -> list[list[str]]:
        return _ndjson(self.dir / "calls.ndjson")

    def commands(self, *words: str) -> list[list[str]]:
        return [argv for argv in self.calls() if argv[:len(words)] == list(words)]

    def serves(self) -> list[list[str]]:
        return [argv for argv in self.commands("agent", "serve") if "--runtime-probe" not in argv]

    def sends(self) -> list[dict[str, Any]]:
        return [line for line in _ndjson(self.dir / "sent.ndjson") if line.get("type") == "send"]

    def say(self, text: str, *, message_id: str | None = None, **extra: Any) -> str:
        message_id = message_id or secrets.token_hex(16)
        line = {"id": message_id, "senderInboxId": PERSON, "senderProfile": {"name": "Sam"}, "content": text, **extra}
        with (self.dir / "inbox.ndjson").open("a", encoding="utf-8") as inbox:
            inbox.write(json.dumps(line) + "\n")
        return message_id

    def control(self, name: str, content: str = "") -> None:
        self.prepare()
        (self.dir / name).write_text(content, encoding="utf-8")

    def identity(self) -> dict[str, Any]:
        return json.loads((self.home / "identity.json").read_text(encoding="utf-8"))


def _ndjson(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _slug_conversation(invite_url: str) -> str:
    slug = invite_url.split("?i=", 1)[1].replace("*", "")  # the fake's slug is base64url JSON
    return json.loads(base64.urlsafe_b64decode(slug + "=" * (-len(slug) % 4)))["c"]


def _listening(runtime: Runtime) -> bool:
    """The agent hears the conversation now (its `agent serve` printed `ready`)."""
    return _wait_for(lambda: runtime.get("/pool/health", auth=False).json()["listening"], 10)


def _claim(runtime: Runtime, **body: Any) -> dict[str, Any]:
    response = runtime.provision(**body)
    assert response.status_code == 200, response.text
    return response.json()


def test_it_a_claim_creates_the_conversation_through_the_cli_and_hands_out_its_invite(start_convos) -> None:
    runtime = start_convos()
    health = runtime.get("/pool/health", auth=False).json()
    assert health["channel"] == "convos" and health["channelReady"] is True and health["listening"] is False
    fake = Fake(runtime)
    # Readiness really loaded the CLI (an unknown flag on `agent serve`), not just `--version`.
    assert fake.commands("agent", "serve", "--runtime-probe")

    answer = _claim(runtime, agentName="Ada")
    create = fake.commands("conversations", "create")
    assert create == [["conversations", "create", "--name", "Ada", "--profile-name", "Ada", "--env", "dev", "--json"]]
    assert answer["status"] == "created" and answer["inviteUrl"].startswith("https://dev.convos.org/v2?i=")
    assert _slug_conversation(answer["inviteUrl"]) == answer["conversationId"]
    # The inbox is the CLI's (its identity on the volume), not one the runtime made up.
    assert runtime.status()["inboxId"] == fake.identity()["inboxId"]
    assert _listening(runtime)
    assert fake.serves()[0] == ["agent", "serve", answer["conversationId"], "--env", "dev", "--json", "--heartbeat", "30"]


def test_it_the_runtime_keeps_its_own_files_out_of_the_cli_home(start_convos) -> None:
    runtime = start_convos()
    _claim(runtime)
    # The CLI's identity.json is the CLI's (a file of the runtime's there would crash the real
    # CLI), and the runtime invents no inbox id of its own beside it.
    assert set(Fake(runtime).identity()) >= {"id", "walletKey", "dbEncryptionKey", "inboxId"}
    assert not (runtime.data_dir / "convos" / "identity.json").exists()
    assert (runtime.data_dir / "convos" / "binding.json").exists()


def test_it_a_message_gets_one_model_request_and_one_send(start_convos, model: StandIn) -> None:
    runtime = start_convos()
    fake = Fake(runtime).prepare()
    fake.control("echo_own")  # even if the CLI echoed the agent's own message, it is not answered
    _claim(runtime, agentName="Ada", instructions="Answer like a pirate.")
    assert _listening(runtime)
    message_id = fake.say("hello")

    assert _wait_for(lambda: fake.sends(), 10), runtime.log()
    assert fake.sends() == [{"type": "send", "text": f"[{MODEL}] You said: hello", "replyTo": message_id}]
    assert len(model.requests) == 1
    request = model.requests[0]
    assert request["model"] == MODEL
    assert "Answer like a pirate." in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "Sam: hello"}
    # Nothing more comes of it: no second request for the echo, no second send.
    assert not _wait_for(lambda: len(model.requests) > 1 or len(fake.sends()) > 1, 1.5)


def test_it_catchup_and_non_text_messages_get_no_answer(start_convos, model: StandIn) -> None:
    runtime = start_convos()
    fake = Fake(runtime).prepare()
    (fake.dir / "catchup.ndjson").write_text(
        json.dumps({"id": "old-1", "senderInboxId": PERSON, "content": "an old question"}) + "\n", encoding="utf-8")
    _claim(runtime)
    assert _listening(runtime)
    fake.say("reacted 👍 to old-1", contentType={"authorityId": "xmtp.org", "typeId": "reaction", "versionMajor": 1, "versionMinor": 0})
    fake.say("now a real one")

    assert _wait_for(lambda: fake.sends(), 10), runtime.log()
    assert not _wait_for(lambda: len(fake.sends()) > 1, 1.0)
    assert [send["text"] for send in fake.sends()] == [f"[{MODEL}] You said: now a real one"]
    assert len(model.requests) == 1
    # The catch-up message is context for the model, not a question to answer.
    assert {"role": "user", "content": "someone: an old question"} in model.requests[0]["messages"] or any(
        "an old question" in str(m.get("content")) for m in model.requests[0]["messages"])


def test_it_a_join_is_pending_until_the_cli_says_joined(start_convos) -> None:
    runtime = start_convos(RUNTIME_JOIN_WAIT_SECONDS="0")
    fake = Fake(runtime)
    fake.control("join_mode", "pending")
    invite = "https://dev.convos.org/v2?i=" + base64.urlsafe_b64encode(json.dumps(
        {"fake": 1, "c": secrets.token_hex(16), "i": PERSON, "t": "AbCdEfGhIj", "n": "Room"}
    ).encode()).decode().rstrip("=")
    # The model is the agent's own business: it never goes into the profile metadata the CLI publishes.
    answer = _claim(runtime, joinUrl=invite, agentName="Ada", metadata={"team": "blue"}, model="test/join-model")
    assert answer["status"] == "pending_acceptance" and answer["conversationId"] is None
    join = fake.commands("conversations", "join")[0]
    assert join[:3] == ["conversations", "join", invite]
    assert join[-2:] == ["--metadata", "team=blue"]  # last: it takes several values
    assert not any("join-model" in arg for arg in join)
    assert runtime.status()["pending"] is True and not fake.serves()

    (fake.dir / "join_mode").unlink()  # the owner accepts
    assert _wait_for(lambda: runtime.status()["conversationId"] is not None, 10), runtime.log()
    status = runtime.status()
    assert status["pending"] is False
    assert fake.commands("conversations", "list")  # acceptance is read from `conversations list --sync`
    assert _wait_for(lambda: any(argv[2] == status["conversationId"] for argv in fake.serves()), 5)


def test_it_a_refused_invite_is_a_502_naming_the_cli_error(start_convos) -> None:
    runtime = start_convos()
    Fake(runtime).control("join_mode", "expired")
    response = runtime.provision(joinUrl="https://dev.convos.org/v2?i=" + "x" * 30)
    assert response.status_code == 502 and "Invite has expired" in response.text


def test_it_a_dead_serve_is_restarted_and_what_was_said_meanwhile_is_answered(start_convos, model: StandIn) -> None:
    runtime = start_convos()
    fake = Fake(runtime).prepare()
    fake.control("no_replay")  # the real CLI: a new serve does not replay history
    _claim(runtime)
    assert _listening(runtime)
    fake.say("first")
    assert _wait_for(lambda: len(fake.sends()) == 1, 10)

    fake.control("die")
    assert _wait_for(lambda: not (fake.dir / "die").exists(), 5)
    # Honest while it restarts: nobody is listening (the restart waits 2 s).
    assert _wait_for(lambda: runtime.get("/pool/health", auth=False).json()["listening"] is False, 2)
    fake.say("while you were away")  # no serve is listening (restart back-off)
    assert _wait_for(lambda: len(fake.serves()) == 2, 10), runtime.log()
    assert "restarting in 2s (attempt 1 of 5)" in runtime.log()

    assert _wait_for(lambda: len(fake.sends()) == 2, 10), runtime.log()
    assert fake.sends()[1]["text"] == f"[{MODEL}] You said: while you were away"
    assert fake.commands("conversation", "messages")  # read back with --sent-after, since the serve does not
    fake.say("and after")
    assert _wait_for(lambda: len(fake.sends()) == 3, 10)
    assert len(model.requests) == 3


def test_it_a_restart_of_the_runtime_keeps_identity_and_conversation(start_runtime: RuntimeFactory, start_convos) -> None:
    runtime = start_convos()
    answer = _claim(runtime)
    inbox = Fake(runtime).identity()["inboxId"]
    assert runtime.stop() == 0

    again = start_convos(data_dir=runtime.data_dir)
    fake = Fake(again)
    assert again.status()["conversationId"] == answer["conversationId"]
    assert fake.identity()["inboxId"] == inbox
    assert _wait_for(lambda: len(fake.serves()) == 2, 5)  # the bound conversation is served again


def test_it_reset_wipes_the_identity_and_the_next_claim_gets_a_new_one(start_convos) -> None:
    runtime = start_convos()
    fake = Fake(runtime)
    _claim(runtime)
    first_inbox = fake.identity()["inboxId"]

    response = runtime.post("/convos/reset")
    assert response.status_code == 200 and response.json()["status"]["clean"] is True
    assert not (fake.home / "identity.json").exists()

    answer = _claim(runtime)
    assert fake.identity()["inboxId"] != first_inbox
    assert runtime.status()["inboxId"] == fake.identity()["inboxId"]
    assert fake.commands("conversations", "create") and answer["conversationId"]


def test_it_staging_talks_to_the_clis_dev_network(start_convos) -> None:
    runtime = start_convos(XMTP_ENV="staging")
    _claim(runtime)
    assert Fake(runtime).commands("conversations", "create")[0][-3:] == ["--env", "dev", "--json"]


def test_it_health_is_503_and_says_why_without_the_cli(start_runtime: RuntimeFactory) -> None:
    runtime = start_runtime(wait=False, RUNTIME_CHANNEL="convos", CONVOS_BIN="/nonexistent/convos")
    response = runtime.wait_until_listening()
    assert response.status_code == 503
    body = response.json()
    assert body["channel"] == "convos" and body["channelReady"] is False
    assert "not installed" in body["reason"]
