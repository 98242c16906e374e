"""The pieces of the convos channel that can be proven without a runtime around them: reading
the CLI's answers, what its child process inherits, and the serve supervisor giving up."""
from __future__ import annotations

import secrets
import stat
import time
from pathlib import Path

import pytest

from runtime.channels.base import ChannelError
from runtime.channels.convos import ConvosChannel
from runtime.channels.convos_cli import ConvosCLI, child_environment, cli_error_message, parse_json_answer
from runtime.channels.convos_serve import RestartPolicy, ServeSupervisor

FAKE_CONVOS = Path(__file__).resolve().parent / "fake_convos.py"


def test_it_a_join_answer_is_read_after_its_progress_lines() -> None:
    stdout = ('Invite parsed: tag=AbCdEfGhIj name="Room" creator=43a6a5935f20...\n'
              "Identity 0123456789ab... (0xAbC)\nJoin request sent.\nWaiting for acceptance (timeout: 20s)...\n"
              '{\n  "status": "joined",\n  "conversationId": "c1",\n  "profile": {\n    "name": "x"\n  }\n}\n')
    assert parse_json_answer(stdout) == {"status": "joined", "conversationId": "c1", "profile": {"name": "x"}}


def test_it_a_list_answer_is_an_array_and_nonsense_is_a_channel_error() -> None:
    assert parse_json_answer('[\n  {\n    "conversationId": "c1"\n  }\n]\n') == [{"conversationId": "c1"}]
    with pytest.raises(ChannelError, match="not JSON"):
        parse_json_answer("Segmentation fault\n")


def test_it_the_cli_error_line_is_what_a_failure_reports() -> None:
    assert cli_error_message(" ›   Error: Invite has expired\n ›   See more help with --help\n") == "Invite has expired"
    assert cli_error_message("something odd\n") == "something odd"
    # As the pinned CLI printed it here (offline): wrapped over several ` ›   ` lines, then USAGE.
    wrapped = (' ›   Error: [ApiError::Api] api client error api client at endpoint \n'
               ' ›   "/xmtp.identity.api.v1.IdentityApi/GetInboxIds" has error code: \'The \n'
               " ›   service is currently unavailable', message: \"dns error\"\n\nUSAGE\n  $ convos conversations create\n")
    assert cli_error_message(wrapped) == ('[ApiError::Api] api client error api client at endpoint "/xmtp.identity.api.v1.IdentityApi/'
                                          'GetInboxIds" has error code: \'The service is currently unavailable\', message: "dns error"')


def test_it_the_cli_inherits_no_credentials_of_the_instance(tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin", "OPENROUTER_API_KEY": secrets.token_hex(8), "AGENTMAIL_API_KEY": secrets.token_hex(8),
            "GATEWAY_TOKEN": secrets.token_hex(8), "XMTP_GATEWAY_HOST": "https://gw.test", "CONVOS_API_KEY": "upload",
            "CONVOS_HOME": "/elsewhere", "CONVOS_ENV": "staging"}
    env = child_environment(base, tmp_path / "cli")
    assert env == {"PATH": "/usr/bin", "XMTP_GATEWAY_HOST": "https://gw.test", "CONVOS_API_KEY": "upload",
                   "CONVOS_HOME": str(tmp_path / "cli"), "CONVOS_SKIP_NEW_VERSION_CHECK": "true", "HOME": str(tmp_path / "cli")}


def test_it_the_probe_loads_the_cli_and_reports_a_broken_one(tmp_path: Path) -> None:
    assert ConvosCLI(binary=str(FAKE_CONVOS), home=tmp_path / "cli", xmtp_env="dev").probe() == (True, "")
    broken = tmp_path / "convos-broken"
    broken.write_text("#!/bin/sh\necho 'Error: Cannot find native binding. GLIBC_2.38 not found' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    ok, why = ConvosCLI(binary=str(broken), home=tmp_path / "cli", xmtp_env="dev").probe()
    assert not ok and "exit 1" in why and "GLIBC_2.38" in why


def test_it_the_supervisor_gives_up_after_its_last_attempt_and_the_channel_says_so(tmp_path: Path) -> None:
    dying = tmp_path / "convos-dying"
    dying.write_text("#!/bin/sh\nexit 1\n")
    dying.chmod(dying.stat().st_mode | stat.S_IEXEC)
    cli = ConvosCLI(binary=str(dying), home=tmp_path / "cli", xmtp_env="dev")
    supervisor = ServeSupervisor(cli, "c1", lambda event: None, RestartPolicy(restart_delay=0.01, max_attempts=3))
    supervisor.start()
    deadline = time.monotonic() + 10
    while not supervisor.failed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert supervisor.failed and supervisor.starts == 4  # the first run and three restarts

    channel = ConvosChannel(data_dir=tmp_path, convos_bin=str(dying), restart_policy=RestartPolicy(restart_delay=0.01, max_attempts=1))
    channel.start("c1", lambda message: None)
    deadline = time.monotonic() + 10
    while not channel._serve.failed and time.monotonic() < deadline:
        time.sleep(0.02)
    ok, why = channel.ready()
    assert not ok and "keeps exiting" in why
    with pytest.raises(ChannelError):
        channel.send("c1", "hello")
    channel.stop()
