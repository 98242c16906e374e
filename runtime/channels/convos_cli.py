"""Running the official Convos CLI (`@xmtp/convos-cli`, pinned in runtime/CONVOS_CLI.md).

One job: turn a CLI command into its parsed JSON answer, or a ChannelError that says what went
wrong. The facts it relies on were read from the pinned package (runtime/CONVOS_CLI.md):

- the home directory is `CONVOS_HOME` (one identity per home);
- `--json` answers are pretty-printed over several lines, and `conversations join` prints
  progress lines on stdout *before* its JSON, so the answer is read from the last line that is
  exactly `{` (or `[` for a list);
- `--env` takes only local, dev or production (the runtime's `staging` is the dev network);
- errors go to stderr as ` ›   Error: <message>` with exit 2 (127 for an unknown command).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runtime.channels.base import ChannelError

logger = logging.getLogger(__name__)

# The runtime's XMTP_ENV → the CLI's --env (the CLI has no staging network name).
CLI_ENVS = {"dev": "dev", "staging": "dev", "production": "production"}

# What the CLI's child environment inherits. Nothing else: the instance's tool credentials
# (LLM key, inbox key, ...) have no business in the CLI's process.
_PASS_NAMES = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR",
               "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")
_PASS_PREFIXES = ("CONVOS_", "XMTP_", "NODE_")
_NOT_PASSED = ("CONVOS_HOME", "CONVOS_ENV", "CONVOS_BIN", "CONVOS_JSON_OUTPUT")


def child_environment(base: Mapping[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items()
           if (k in _PASS_NAMES or k.startswith(_PASS_PREFIXES)) and k not in _NOT_PASSED}
    env["CONVOS_HOME"] = str(home)
    # The CLI checks npm once a day for a newer version; an instance never upgrades itself.
    env["CONVOS_SKIP_NEW_VERSION_CHECK"] = "true"
    env.setdefault("HOME", str(home))
    return env


def parse_json_answer(stdout: str) -> Any:
    """The JSON a `--json` command printed, after any progress lines."""
    lines = stdout.splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].rstrip() in ("{", "[")), None)
    text = "\n".join(lines[start:]) if start is not None else stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        raise ChannelError(f"the convos CLI answered something that is not JSON: {_clip(stdout)!r}") from None


def cli_error_message(stderr: str) -> str:
    """The CLI's own error (` ›   Error: ...`, wrapped over ` ›   ` lines), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "Error:" in line:
            parts = [line.split("Error:", 1)[1].strip()]
            for more in lines[index + 1:]:
                if not more.startswith("›") or "See more help" in more:
                    break
                parts.append(more.lstrip("› ").strip())
            return _clip(" ".join(parts))
    return _clip(lines[-1]) if lines else "no message"


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class ConvosCLI:
    """The `convos` binary, bound to one home directory and one XMTP network."""

    def __init__(self, *, binary: str, home: Path, xmtp_env: str, base_env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.home = home
        self.cli_env = CLI_ENVS.get(xmtp_env, "dev")
        self._base_env = os.environ if base_env is None else base_env

    def resolve(self) -> str | None:
        """The binary's full path, or None when it is not installed."""
        return shutil.which(self.binary, path=self._base_env.get("PATH"))

    def environment(self) -> dict[str, str]:
        return child_environment(self._base_env, self.home)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *args]

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)

    def run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        self._prepare()
        try:
            # cwd is the home: the CLI loads ./.env from its working directory, and a stray one
            # elsewhere must not configure it.
            return subprocess.run(self.argv(*args), cwd=self.home, env=self.environment(), capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise ChannelError(f"the convos CLI is not installed ({self.binary!r} not found)") from None
        except subprocess.TimeoutExpired:
            raise ChannelError(f"`convos {args[0]} {args[1] if len(args) > 1 else ''}` did not finish in {timeout:.0f}s") from None

    def run_json(self, *args: str, timeout: float) -> Any:
        """Run a one-shot command with `--json` and return its answer."""
        # `--metadata` takes several values, so it must come last (it would swallow what follows).
        cut = args.index("--metadata") if "--metadata" in args else len(args)
        done = self.run(*args[:cut], "--env", self.cli_env, "--json", *args[cut:], timeout=timeout)
        if done.returncode != 0:
            what = " ".join(args[:2])
            raise ChannelError(f"`convos {what}` failed (exit {done.returncode}): {cli_error_message(done.stderr)}")
        return parse_json_answer(done.stdout)

    def spawn_serve(self, conversation_id: str, *, heartbeat: int) -> subprocess.Popen[str]:
        """The long-lived `agent serve` for one conversation: ndjson events on stdout, one JSON
        command per stdin line (stdin stays a pipe: its end-of-file stops the CLI)."""
        self._prepare()
        return subprocess.Popen(
            self.argv("agent", "serve", conversation_id, "--env", self.cli_env, "--json", "--heartbeat", str(heartbeat)),
            cwd=self.home, env=self.environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, encoding="utf-8", errors="replace",
        )

    def probe(self, *, timeout: float = 30.0) -> tuple[bool, str]:
        """Whether the CLI runs here, native XMTP binding included. `--version` alone proves
        little (it never loads the SDK); an unknown flag on `agent serve` loads the command
        module, SDK and binding, then fails flag parsing with exit 2. A broken binding exits 1."""
        if self.resolve() is None:
            return False, f"the convos CLI is not installed ({self.binary!r} not found on PATH)"
        try:
            done = self.run("agent", "serve", "--runtime-probe", timeout=timeout)
        except ChannelError as exc:
            return False, str(exc)
        if done.returncode == 2 and "Nonexistent flag" in done.stderr:
            return True, ""
        return False, f"the convos CLI cannot start (exit {done.returncode}): {cli_error_message(done.stderr)}"
