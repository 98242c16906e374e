#!/usr/bin/env python3
"""A stand-in for the ``convos`` binary (npm ``@xmtp/convos-cli@0.10.15``) for tests.

Standard library only. It speaks what the real CLI was verified to speak (see
/tmp/convos-cli-research/REPORT.md, made from the package's own sources): the same argv,
the same JSON / ndjson field names, the same exit codes for the cases it supports.

Home directory (resolved as the real CLI does)
----------------------------------------------
``--home <dir>`` flag, else ``$CONVOS_HOME``, else ``$HOME/.convos``.
A runtime points the real CLI and this fake at a directory the same way: set
``CONVOS_HOME=<dir>`` in the child's environment (or pass ``--home <dir>``).

Under the home, like the real CLI:

- ``identity.json`` holds the install's single identity
  ``{id, walletKey, dbEncryptionKey, createdAt, inboxId}``. It is created on first use.
  If the file exists without ``walletKey`` (for example another program wrote its own
  identity.json there), every command that needs the identity fails with exit 2 and
  ``Cannot read properties of undefined (reading 'slice')``, just as the real CLI does.
- ``db/<env>/main.db3`` is an empty placeholder.

Everything that belongs only to the fake lives in ``<home>/fake/``.

Test-control interface (all paths relative to ``<home>/fake/``)
----------------------------------------------------------------
``calls.ndjson``
    Written by the fake. Every invocation appends its argv (without the program name) as one
    JSON array per line, before anything else happens.
``conversations.json``
    The fake's "database": conversations and pending joins. Tests normally leave it alone.
``join_mode``
    Read by ``conversations join``. ``pending`` means the join is not accepted: after the
    progress lines it prints ``{"status": "timeout", ...}`` with exit 0, as the real CLI does
    when ``--timeout`` runs out. ``invalid`` gives exit 2 ``Invalid invite signature``.
    ``expired`` gives exit 2 ``Invite has expired``. Missing or anything else means joined.
    ``--timeout 0`` also times out, as in the real CLI. ``--no-wait`` answers
    ``{"status": "request_sent", ...}``.
    A pending join (timed out or ``--no-wait``) is remembered. Once ``join_mode`` no longer
    says ``pending``, the next ``conversations list --sync`` (the real way to check a pending
    join) shows the conversation, and from then on ``agent serve`` / ``conversation
    profiles`` find it.
``join_delay``
    Optional float, in seconds. ``join`` sleeps ``min(join_delay, --timeout)`` before
    answering. The real CLI polls for up to ``--timeout`` seconds; the fake answers at once
    unless this file asks it to wait.
``catchup.ndjson``
    Message objects. At startup ``agent serve`` replays each line as a ``message`` event
    with ``"catchup": true``.
``inbox.ndjson``
    The test appends message objects, for example
    ``{"id", "senderInboxId", "senderProfile": {"name"}, "content"}``. Optional keys are
    ``contentType`` (default ``{"authorityId":"xmtp.org","typeId":"text","versionMajor":1,
    "versionMinor":0}``), ``sentAt`` (default now, ISO with milliseconds), ``deliveryStatus``
    (default 1) and ``remoteAttachment``. A line without an ``id`` gets a stable id derived
    from the line. ``agent serve`` polls the file every 0.05 s and only reads complete
    lines. Lines that were already there when the process started are emitted with
    ``"catchup": true``: a restarted serve re-emits them, because the offset is kept in
    memory only. Lines appended later are live ``message`` events, and like the real CLI
    they have **no** ``catchup`` key (the real CLI never writes ``"catchup": false``).
    A line whose ``event`` is not ``"message"`` (e.g. ``{"event": "member_joined",
    "inboxId": "..."}``) is passed through as that event; ``conversationId`` and
    ``timestamp`` are filled in when missing.
    As in the real CLI, messages whose ``senderInboxId`` is the agent's own inbox id are
    never emitted, and each message id is emitted at most once per process.
``no_replay``
    If this file exists, ``agent serve`` starts tailing ``inbox.ndjson`` at its current end
    and re-emits nothing. That is what the real CLI does: it never replays history when it
    starts.
``echo_own``
    If this file exists, the agent's own messages are emitted too. The real CLI never does
    this.
``sent.ndjson``
    Written by the fake. Every stdin command line that is valid JSON is appended (compact
    JSON), before it is handled. ``agent serve`` answers each command as the real CLI does:
    ``send`` → ``{"event":"sent","id","text","replyTo"?,"timestamp"}``; ``react``,
    ``read-receipt``, ``rename``, ``update-profile``, ``lock``, ``unlock``, ``explode``,
    ``typing``, ``thinking``, ``attach``, ``remote-attach`` and the connection commands get
    their own ``sent`` shapes. A missing field, an unknown ``type`` or bad JSON gives an
    ``error`` event. ``stop``, stdin EOF, an immediate ``explode``, SIGTERM and SIGINT all
    end the process with exit 0.
``die``
    When ``agent serve`` finds this file (it checks on every 0.05 s poll), it deletes it and
    exits with code 1. Tests use it to exercise restarts.

Commands
--------
``conversations create``, ``conversations join``, ``conversations list``,
``agent serve [ID]`` (``--heartbeat N`` emits ``heartbeat`` every N seconds),
``conversation profiles ID``, ``conversation messages ID`` (answered from catchup.ndjson +
inbox.ndjson), ``reset --force``, ``--version`` and ``--help``.

Exit codes follow the real CLI (oclif):

- 0: success, including a join that is still pending (``status: "timeout"``).
- 2: parse errors (unknown flag, bad ``--env`` value such as ``staging``, missing or extra
  argument, non-integer ``--timeout``/``--heartbeat``) and command errors (``Conversation
  not found: <id>`` and the like). The message goes to stderr as `` ›   Error: ...``.
- 127: an unknown command (`` ›   Warning: foo is not a convos command.``).
- 2 as well for a real convos command that this fake does not implement
  (`` ›   Error: fake convos does not implement '<command>'``).

Output is written as the real CLI writes it:

- ``--json`` answers (and ``CONVOS_JSON_OUTPUT=true`` or ``--fields``) are pretty-printed
  JSON, ``indent=2``, spread over several lines.
- ``conversations join`` prints its progress lines (``Invite parsed: ...``) on stdout
  *before* the JSON. Parse it from the last line that is exactly ``{``.
- ``agent serve`` writes compact ndjson on stdout, whatever ``--json`` says. Diagnostics go
  to stderr.

Invite links made by the fake are ``https://dev.convos.org/v2?i=<slug>``, or
``https://popup.convos.org/v2?i=<slug>`` with ``--env production``. The slug is base64url
JSON that carries the conversation id, the creator's inbox id, the tag and the name, so a
second home can ``join`` it. The fake also accepts any other invite (the real CLI would
reject one that is not a signed invite): the conversation id and creator inbox id are then
derived from a hash of the slug.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import secrets
import select
import shutil
import signal
import string
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

VERSION = "0.10.15"
VALID_ENVS = ("local", "dev", "production")
TEXT_CONTENT_TYPE = {"authorityId": "xmtp.org", "typeId": "text", "versionMajor": 1, "versionMinor": 0}
POLL_SECONDS = 0.05

# Every command id of the real 0.10.15 package (dist/commands/**).
REAL_COMMANDS = {
    "agent serve", "attestation generate", "attestation verify", "conversation add-members",
    "conversation consent-state", "conversation download-attachment",
    "conversation download-profile-image", "conversation explode", "conversation explode-status",
    "conversation info", "conversation invite", "conversation last-read-times", "conversation lock",
    "conversation members", "conversation messages", "conversation permissions",
    "conversation profiles", "conversation remove-members", "conversation send-attachment",
    "conversation send-capability-request", "conversation send-cloud-connection-grant-request",
    "conversation send-invocation", "conversation send-reaction", "conversation send-read-receipt",
    "conversation send-remote-attachment", "conversation send-reply", "conversation send-text",
    "conversation send-typing-indicator", "conversation stream", "conversation sync",
    "conversation update-consent", "conversation update-description", "conversation update-name",
    "conversation update-profile", "conversations create", "conversations inspect-invite",
    "conversations join", "conversations list", "conversations process-join-requests",
    "conversations sync", "identity create", "identity info", "identity list", "identity remove",
    "init", "reset", "schema", "help", "autocomplete",
}
TOPICS = {"agent", "attestation", "conversation", "conversations", "identity"}

MIME_TYPES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
    ".webp": "image/webp", ".svg": "image/svg+xml", ".bmp": "image/bmp", ".ico": "image/x-icon",
    ".tif": "image/tiff", ".tiff": "image/tiff", ".heic": "image/heic", ".heif": "image/heif",
    ".avif": "image/avif", ".mp4": "video/mp4", ".mov": "video/quicktime",
    ".avi": "video/x-msvideo", ".webm": "video/webm", ".mp3": "audio/mpeg", ".wav": "audio/wav",
    ".ogg": "audio/ogg", ".pdf": "application/pdf", ".txt": "text/plain",
    ".json": "application/json", ".xml": "application/xml", ".zip": "application/zip",
    ".gz": "application/gzip",
}
UPLOAD_PROVIDERS = ("pinata", "convos-api")


# --------------------------------------------------------------------------- helpers


class CLIError(Exception):
    """An error the real CLI reports on stderr and exits with (oclif: exit 2 by default)."""

    def __init__(self, message: str, exit_code: int = 2, see_help: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.see_help = see_help


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rand_hex(nbytes: int) -> str:
    return secrets.token_hex(nbytes)


def rand_alnum(n: int) -> str:
    chars = string.ascii_letters + string.digits
    return "".join(secrets.choice(chars) for _ in range(n))


def stable_hex(seed: str, nchars: int) -> str:
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:nchars]


def stable_alnum(seed: str, n: int) -> str:
    chars = string.ascii_letters + string.digits
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return "".join(chars[b % len(chars)] for b in digest[:n])


def address_for(wallet_key: str) -> str:
    """A 0x + 40 hex address with a checksum-looking mix of cases (not real EIP-55)."""
    digest = hashlib.sha256(wallet_key.encode()).hexdigest()
    body = digest[:40]
    mixer = hashlib.sha256(body.encode()).hexdigest()
    return "0x" + "".join(c.upper() if c.isalpha() and int(mixer[i], 16) >= 8 else c for i, c in enumerate(body))


def compact(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def pretty(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2)


def stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def stdout_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_error(message: str, see_help: bool = False) -> None:
    lines = message.split("\n")
    out = "".join((f" \u203a   {'Error: ' if i == 0 else ''}{line}").rstrip() + "\n" for i, line in enumerate(lines))
    if see_help:
        out += " \u203a   See more help with --help\n"
    stderr(out)


def atomic_write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def read_ndjson(path: Path) -> list[tuple[str, dict]]:
    """(raw line, object) for each valid JSON-object line of an ndjson file."""
    try:
        data = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for raw in data.split("\n"):
        raw = raw.strip()
        if not raw:
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            stderr(f"fake convos: skipping malformed line in {path.name}: {raw[:80]}\n")
            continue
        if isinstance(obj, dict):
            out.append((raw, obj))
    return out


def resolve_home(argv: list[str]) -> Path:
    """--home flag > $CONVOS_HOME > $HOME/.convos (baseCommand.js:120, identities.js:5-6)."""
    for i, tok in enumerate(argv):
        if tok == "--":
            break
        if tok == "--home" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if tok.startswith("--home="):
            return Path(tok.split("=", 1)[1])
    if os.environ.get("CONVOS_HOME"):
        return Path(os.environ["CONVOS_HOME"])
    return Path(os.environ.get("HOME") or os.environ.get("USERPROFILE") or ".") / ".convos"


def load_dotenv(path: Path) -> bool:
    """process.loadEnvFile: KEY=VALUE lines; existing variables are not overridden."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[7:]
        key, value = line.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'`":
            value = value[1:-1]
        if key and key not in os.environ:
            os.environ[key] = value
    return True


# --------------------------------------------------------------------------- argv parsing (oclif-like)

STR, BOOL, INT, OPT = "string", "boolean", "integer", "option"

COMMON_FLAGS = {
    "home": {"kind": STR}, "env-file": {"kind": STR}, "env": {"kind": OPT, "options": VALID_ENVS},
    "gateway-host": {"kind": STR}, "json": {"kind": BOOL}, "fields": {"kind": STR},
    "verbose": {"kind": BOOL},
}
BASE_FLAGS = {
    **COMMON_FLAGS,
    "log-level": {"kind": OPT, "options": ("off", "error", "warn", "info", "debug", "trace")},
    "structured-logging": {"kind": BOOL}, "app-version": {"kind": STR},
}
ATTESTATION_FLAGS = {"attestation": {"kind": STR}, "attestation-ts": {"kind": STR}, "attestation-kid": {"kind": STR}}
PERMISSIONS = {"kind": OPT, "options": ("all-members", "admin-only"), "default": "all-members"}

SPECS = {
    "conversations create": {
        "args": [],
        "flags": {**BASE_FLAGS, "name": {"kind": STR}, "description": {"kind": STR}, "image-url": {"kind": STR},
                  "permissions": PERMISSIONS, "profile-name": {"kind": STR}, "profile-image": {"kind": STR},
                  "metadata": {"kind": STR, "multiple": True}, **ATTESTATION_FLAGS},
    },
    "conversations join": {
        "args": [("invite", "Invite slug or URL", True)],
        "flags": {**BASE_FLAGS, "no-wait": {"kind": BOOL}, "timeout": {"kind": INT, "default": 60},
                  "profile-name": {"kind": STR}, "profile-image": {"kind": STR},
                  "metadata": {"kind": STR, "multiple": True}, **ATTESTATION_FLAGS,
                  "attestation-private-key": {"kind": STR}},
    },
    "conversations list": {
        "args": [],
        "flags": {**BASE_FLAGS, "sync": {"kind": BOOL}, "include-dms": {"kind": BOOL},
                  "include-inactive": {"kind": BOOL}},
    },
    "agent serve": {
        "args": [("id", "Existing conversation ID to attach to (omit to create new)", False)],
        "flags": {**BASE_FLAGS, "name": {"kind": STR}, "description": {"kind": STR}, "permissions": PERMISSIONS,
                  "profile-name": {"kind": STR}, "no-invite": {"kind": BOOL},
                  "heartbeat": {"kind": INT, "default": 0}, **ATTESTATION_FLAGS,
                  "attestation-private-key": {"kind": STR}},
    },
    "conversation profiles": {
        "args": [("id", "The conversation ID", True)],
        "flags": {**BASE_FLAGS},
    },
    "conversation messages": {
        "args": [("id", "The conversation ID", True)],
        "flags": {**BASE_FLAGS, "sync": {"kind": BOOL}, "limit": {"kind": INT},
                  "direction": {"kind": OPT, "options": ("ascending", "descending"), "default": "descending"},
                  "sent-before": {"kind": STR}, "sent-after": {"kind": STR},
                  "delivery-status": {"kind": OPT, "options": ("unpublished", "published", "failed")},
                  "kind": {"kind": OPT, "options": ("application", "membership-change")},
                  "content-type": {"kind": STR, "multiple": True},
                  "exclude-content-type": {"kind": STR, "multiple": True}},
    },
    "reset": {
        "args": [],
        "flags": {**COMMON_FLAGS, "force": {"kind": BOOL, "char": "f"}},
    },
}


def parse_argv(spec: dict, tokens: list[str]) -> tuple[dict, dict]:
    flags_spec = spec["flags"]
    chars = {v["char"]: k for k, v in flags_spec.items() if v.get("char")}
    flags: dict = {}
    args: list[str] = []
    i = 0
    end_of_flags = False
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if end_of_flags or not tok.startswith("-") or tok == "-":
            args.append(tok)
            continue
        if tok == "--":
            end_of_flags = True
            continue
        if tok.startswith("--"):
            name, eq, inline = tok[2:].partition("=")
        else:
            name, eq, inline = chars.get(tok[1:2], "\0" + tok), "", ""
            if len(tok) > 2:
                eq, inline = "=", tok[2:]
        if name not in flags_spec:
            raise CLIError(f"Nonexistent flag: {tok.split('=', 1)[0]}", see_help=True)
        fs = flags_spec[name]
        if fs["kind"] == BOOL:
            if name in flags:
                raise CLIError(f"Flag --{name} can only be specified once", see_help=True)
            flags[name] = True
            continue
        if eq:
            value = inline
        elif i < len(tokens):
            value = tokens[i]
            i += 1
        else:
            raise CLIError(f"Flag --{name} expects a value", see_help=True)
        values = [value]
        if fs.get("multiple"):
            # oclif: a multiple-valued flag also takes the following non-flag tokens.
            while i < len(tokens) and not tokens[i].startswith("-"):
                values.append(tokens[i])
                i += 1
        for v in values:
            if fs["kind"] == INT:
                try:
                    v_conv = int(v, 10)
                except ValueError:
                    raise CLIError(f"Parsing --{name} \n\tExpected an integer but received: {v}", see_help=True) from None
            elif fs["kind"] == OPT:
                if v not in fs["options"]:
                    raise CLIError(f"Expected --{name}={v} to be one of: {', '.join(fs['options'])}", see_help=True)
                v_conv = v
            else:
                v_conv = v
            if fs.get("multiple"):
                flags.setdefault(name, []).append(v_conv)
            else:
                if name in flags:
                    raise CLIError(f"Flag --{name} can only be specified once", see_help=True)
                flags[name] = v_conv
    for name, fs in flags_spec.items():
        if name not in flags and "default" in fs:
            flags[name] = fs["default"]
        if name not in flags and fs["kind"] == BOOL:
            flags[name] = False
    arg_specs = spec["args"]
    if len(args) > len(arg_specs):
        raise CLIError(f"Unexpected argument: {args[len(arg_specs)]}", see_help=True)
    missing = [a for idx, a in enumerate(arg_specs) if a[2] and idx >= len(args)]
    if missing:
        lines = [f"Missing {len(missing)} required arg:"] + [f"{a[0]}  {a[1]}" for a in missing]
        if any(fs.get("multiple") for fs in flags_spec.values()):
            multi = next(n for n, fs in flags_spec.items() if fs.get("multiple"))
            lines += ["", f"Note: --{multi} allows multiple values. Because of this you need to provide all "
                          "arguments before providing that flag.",
                      'Alternatively, you can use "--" to signify the end of the flags and the beginning of arguments.']
        raise CLIError("\n".join(lines), see_help=True)
    named_args = {a[0]: (args[idx] if idx < len(args) else None) for idx, a in enumerate(arg_specs)}
    return named_args, flags


# --------------------------------------------------------------------------- state


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fake = path / "fake"
        self.identity_path = path / "identity.json"
        self.store_path = self.fake / "conversations.json"

    # -- identity (identities.js) --------------------------------------------

    def identity_exists(self) -> bool:
        return self.identity_path.exists()

    def load_identity(self, env: str) -> dict:
        """loadOrUpsert() + client build: create on first use, then record the inbox id."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.identity_path.exists():
            try:
                identity = json.loads(self.identity_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CLIError(f"Unexpected token in JSON: {exc}") from None
            if not isinstance(identity, dict) or not isinstance(identity.get("walletKey"), str):
                # privateKeyToAccount(undefined) in the real CLI.
                raise CLIError("Cannot read properties of undefined (reading 'slice')")
        else:
            identity = {
                "id": rand_hex(16),
                "walletKey": "0x" + rand_hex(32),
                "dbEncryptionKey": rand_hex(32),
                "createdAt": now_iso(),
            }
            atomic_write_json(self.identity_path, identity)
        db_dir = self.path / "db" / env
        db_dir.mkdir(parents=True, exist_ok=True)
        (db_dir / "main.db3").touch(exist_ok=True)
        if not identity.get("inboxId"):
            identity["inboxId"] = rand_hex(32)
            atomic_write_json(self.identity_path, identity)
        return identity

    # -- the fake's conversation database ------------------------------------

    def load_store(self) -> dict:
        try:
            store = json.loads(self.store_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            store = {}
        store.setdefault("conversations", {})
        store.setdefault("pending", [])
        return store

    def save_store(self, store: dict) -> None:
        atomic_write_json(self.store_path, store)

    def control(self, name: str) -> str | None:
        try:
            return (self.fake / name).read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def join_mode(self) -> str:
        return (self.control("join_mode") or "joined").lower()

    def promote_pending(self, store: dict) -> bool:
        """Pending joins become conversations once the test stops saying `pending`."""
        if self.join_mode() == "pending" or not store["pending"]:
            return False
        for p in store["pending"]:
            store["conversations"].setdefault(p["conversationId"], p["conversation"])
        store["pending"] = []
        return True

    def find_conversation(self, store: dict, conversation_id: str, env: str) -> dict | None:
        conv = store["conversations"].get(conversation_id)
        if conv and conv.get("env") == env:
            return conv
        return None


# --------------------------------------------------------------------------- invites


def invite_base(env: str) -> str:
    return "https://popup.convos.org/v2" if env == "production" else "https://dev.convos.org/v2"


def make_slug(conversation_id: str, creator_inbox_id: str, tag: str, name: str | None) -> str:
    payload = {"fake": 1, "c": conversation_id, "i": creator_inbox_id, "t": tag}
    if name:
        payload["n"] = name
    encoded = base64.urlsafe_b64encode(compact(payload).encode("utf-8")).decode("ascii").rstrip("=")
    return "*".join(encoded[i:i + 300] for i in range(0, len(encoded), 300))


def invite_url(env: str, slug: str) -> str:
    return f"{invite_base(env)}?i={slug}"  # encodeURIComponent leaves base64url and '*' alone


def parse_invite(text: str) -> dict:
    slug = text.strip()
    parts = urlsplit(slug)
    if parts.scheme and parts.netloc:
        i = parse_qs(parts.query).get("i")
        if i:
            slug = i[0]
    slug = slug.replace("*", "")
    try:
        raw = base64.urlsafe_b64decode(slug + "=" * (-len(slug) % 4))
        payload = json.loads(raw.decode("utf-8"))
        if isinstance(payload, dict) and payload.get("fake") == 1:
            return {"slug": slug, "conversationId": payload["c"], "creatorInboxId": payload["i"],
                    "tag": payload["t"], "name": payload.get("n")}
    except (ValueError, KeyError, UnicodeDecodeError):
        pass
    # Not a fake slug: accept it anyway with ids derived from it.
    return {"slug": slug, "conversationId": stable_hex("conversation:" + slug, 32),
            "creatorInboxId": stable_hex("creator:" + slug, 64), "tag": stable_alnum("tag:" + slug, 10),
            "name": None}


# --------------------------------------------------------------------------- output


def apply_fields(data, fields: list[str] | None):
    if not fields or data is None:
        return data
    if isinstance(data, list):
        return [apply_fields(item, fields) for item in data]
    if not isinstance(data, dict):
        return data
    result: dict = {}
    for field in fields:
        cur = data
        ok = True
        for key in field.split("."):
            if isinstance(cur, dict) and key in cur:
                cur = cur[key]
            else:
                ok = False
                break
        if not ok:
            continue
        target = result
        keys = field.split(".")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = cur
    return result


def format_human(data, indent: int = 0) -> str:
    prefix = " " * indent
    if data is None:
        return ""
    if isinstance(data, str):
        return prefix + data
    if isinstance(data, bool):
        return prefix + ("true" if data else "false")
    if isinstance(data, (int, float)):
        return prefix + str(data)
    if isinstance(data, list):
        if not data:
            return prefix + "(empty)"
        if isinstance(data[0], dict):
            keys = list(data[0].keys())

            def sv(v):
                if v is None:
                    return ""
                if isinstance(v, bool):
                    return "true" if v else "false"
                return v if isinstance(v, str) else (str(v) if isinstance(v, (int, float)) else compact(v))
            widths = [max(len(k), *(len(sv(r.get(k))) for r in data)) for k in keys]
            header = prefix + "  ".join(k.ljust(w) for k, w in zip(keys, widths))
            sep = prefix + "  ".join("-" * w for w in widths)
            body = "\n".join(prefix + "  ".join(sv(r.get(k)).ljust(w) for k, w in zip(keys, widths)) for r in data)
            return f"{header}\n{sep}\n{body}"
        return "\n".join(format_human(item, indent) for item in data)
    if isinstance(data, dict):
        entries = [(k, v) for k, v in data.items() if v is not None and v != ""]
        if not entries:
            return ""
        width = max(len(k) for k, _ in entries)
        return "\n".join(f"{prefix}{k.ljust(width)}  {format_human(v)}" for k, v in entries)
    return prefix + compact(data)


class Ctx:
    """What ConvosBaseCommand.init() resolves: home, env, JSON mode, fields."""

    def __init__(self, home: Home, flags: dict) -> None:
        self.home = home
        self.flags = flags
        env_file = flags.get("env-file")
        if env_file:
            if not load_dotenv(Path(env_file).resolve()):
                raise CLIError(f"Failed to load env file: {env_file}")
        elif not load_dotenv(Path.cwd() / ".env"):
            load_dotenv(home.path / ".env")
        env_var = os.environ.get("CONVOS_ENV")
        self.env = flags.get("env") or (env_var if env_var in VALID_ENVS else None) or "dev"
        self.fields = None
        self.json = bool(flags.get("json")) or os.environ.get("CONVOS_JSON_OUTPUT") == "true"
        if flags.get("fields"):
            self.fields = [f.strip() for f in flags["fields"].split(",") if f.strip()]
            self.json = True

    def output(self, data) -> None:
        data = apply_fields(data, self.fields)
        stdout_line(pretty(data) if self.json else format_human(data))

    def log(self, text: str) -> None:
        stdout_line(text)  # this.log is not muted in JSON mode (no enableJsonFlag)

    def warn(self, text: str) -> None:
        stderr(f" \u203a   Warning: {text}\n")

    def upload_provider(self) -> str | None:
        provider = os.environ.get("CONVOS_UPLOAD_PROVIDER")
        if not provider and os.environ.get("CONVOS_API_KEY"):
            return "convos-api"
        if not provider:
            return None
        if provider not in UPLOAD_PROVIDERS:
            raise RuntimeError(f"Unknown upload provider: {provider}. Available: {', '.join(UPLOAD_PROVIDERS)}")
        return provider


_JS_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^0[xX][0-9a-fA-F]+$|^0[oO][0-7]+$|^0[bB][01]+$")


def js_number(value: str):
    """Number(value) for the literals JS accepts; None where JS gives NaN."""
    if not _JS_NUMBER.match(value):
        return None
    if value[:2].lower() in ("0x", "0o", "0b"):
        return int(value, 0)
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def typed_value(value) -> dict:
    """update-profile metadata values (serve.js:1058-1068): bool, number, else String(value)."""
    if isinstance(value, bool):
        return {"type": "bool", "value": value}
    if isinstance(value, (int, float)):
        return {"type": "number", "value": value}
    return {"type": "string", "value": value if isinstance(value, str) else compact(value)}


def parse_metadata(entries: list[str] | None) -> tuple[dict | None, dict | None]:
    """parseMetadataFlags (profileMessages.js:535-564): (typed metadata, raw join metadata)."""
    if not entries:
        return None, None
    parsed, raw = {}, {}
    for entry in entries:
        if "=" not in entry:
            raise CLIError(f'Invalid metadata format: "{entry}". Expected key=value')
        key, value = entry.split("=", 1)
        if not key:
            raise CLIError(f'Empty metadata key in "{entry}"')
        raw[key] = value
        number = js_number(value) if value != "" and value.strip() == value else None
        if value in ("true", "false"):
            parsed[key] = {"type": "bool", "value": value == "true"}
        elif number is not None:
            parsed[key] = {"type": "number", "value": number}
        else:
            parsed[key] = {"type": "string", "value": value}
    return parsed, raw


# --------------------------------------------------------------------------- commands


def cmd_create(ctx: Ctx, args: dict, flags: dict) -> int:
    identity = ctx.home.load_identity(ctx.env)
    parsed_meta, _ = parse_metadata(flags.get("metadata"))
    inbox = identity["inboxId"]
    conversation_id = rand_hex(16)
    tag = rand_alnum(10)
    name = flags.get("name")
    slug = make_slug(conversation_id, inbox, tag, name or None)
    url = invite_url(ctx.env, slug)
    created_at = now_iso()
    store = ctx.home.load_store()
    store["conversations"][conversation_id] = {
        "env": ctx.env, "name": name or "", "description": flags.get("description") or "",
        "permissions": flags["permissions"], "createdAt": created_at, "role": "creator",
        "creatorInboxId": inbox, "tag": tag, "members": [inbox], "isActive": True, "isLocked": False,
        "profileName": flags.get("profile-name") or identity.get("profileName"),
        "metadata": parsed_meta,
    }
    ctx.home.save_store(store)
    if not ctx.json:
        ctx.log("")
        ctx.log("[QR code omitted by the fake]")
        ctx.log(f"  {url}\n")
    ctx.output({
        "conversationId": conversation_id,
        "identityId": identity["id"],
        "address": address_for(identity["walletKey"]),
        "inboxId": inbox,
        "name": name if name is not None else "",
        "description": flags.get("description") if flags.get("description") is not None else "",
        "permissions": flags["permissions"],
        "createdAt": created_at,
        "invite": {"slug": slug, "url": url, "tag": tag},
    })
    return 0


def cmd_join(ctx: Ctx, args: dict, flags: dict) -> int:
    parsed_meta, join_meta = parse_metadata(flags.get("metadata"))
    invite = parse_invite(args["invite"])
    mode = ctx.home.join_mode()
    if mode == "invalid":
        raise CLIError("Invalid invite signature")
    if mode == "expired":
        raise CLIError("Invite has expired")
    ctx.log(f"Invite parsed: tag={invite['tag']}" + (f' name="{invite["name"]}"' if invite["name"] else "")
            + f" creator={invite['creatorInboxId'][:12]}...")
    identity = ctx.home.load_identity(ctx.env)
    inbox = identity["inboxId"]
    if invite["creatorInboxId"] == inbox:
        raise CLIError("Invite was created by this install \u2014 you cannot join your own conversation.")
    address = address_for(identity["walletKey"])
    ctx.log(f"Identity {identity['id'][:12]}... ({address})")
    ctx.log(f"Sending join request to creator inbox {invite['creatorInboxId'][:12]}...")
    ctx.log("Join request sent.")

    profile_name = flags.get("profile-name") or identity.get("profileName")
    profile_image = flags.get("profile-image") or identity.get("profileImageUrl")
    conversation = {
        "env": ctx.env, "name": invite["name"] or "", "description": "", "permissions": "all-members",
        "createdAt": now_iso(), "role": "member", "creatorInboxId": invite["creatorInboxId"],
        "tag": invite["tag"], "members": [invite["creatorInboxId"], inbox], "isActive": True,
        "isLocked": False, "profileName": profile_name, "metadata": parsed_meta,
    }
    store = ctx.home.load_store()

    def remember_pending() -> None:
        store["pending"] = [p for p in store["pending"] if p["conversationId"] != invite["conversationId"]]
        store["pending"].append({"conversationId": invite["conversationId"], "conversation": conversation})
        ctx.home.save_store(store)

    if flags.get("no-wait"):
        if any(flags.get(k) for k in ("attestation", "attestation-ts", "attestation-kid", "attestation-private-key")):
            ctx.warn("Attestation flags have no effect with --no-wait. Attestation metadata is sent via "
                     "ProfileUpdate after joining, which requires waiting for acceptance.")
        remember_pending()
        out = {
            "status": "request_sent", "identityId": identity["id"], "address": address, "inboxId": inbox,
            "creatorInboxId": invite["creatorInboxId"], "tag": invite["tag"],
            "conversationName": invite["name"], "profileName": flags.get("profile-name"),
            "profileImage": flags.get("profile-image"),
        }
        if join_meta:
            out["metadata"] = join_meta
        out["message"] = ("Join request sent. The creator must accept it. "
                          "Run 'convos conversations list --sync' to check if you've been added.")
        ctx.output(out)
        return 0

    timeout = flags["timeout"]
    ctx.log(f"Waiting for acceptance (timeout: {timeout}s)...")
    try:
        delay = float(ctx.home.control("join_delay") or 0)
    except ValueError:
        delay = 0.0
    if delay > 0:
        time.sleep(max(0.0, min(delay, float(timeout))))
    if mode == "pending" or timeout <= 0:
        remember_pending()
        ctx.log("Timed out waiting for acceptance.")
        ctx.output({
            "status": "timeout", "identityId": identity["id"], "address": address, "inboxId": inbox,
            "tag": invite["tag"],
            "message": ("The creator has not yet accepted the join request. "
                        "Run 'convos conversations list --sync' later to check."),
        })
        return 0
    if profile_image and not ctx.upload_provider():
        ctx.warn("Image upload requires an upload provider. Set CONVOS_API_KEY or CONVOS_UPLOAD_PROVIDER. Skipping image.")
    store["pending"] = [p for p in store["pending"] if p["conversationId"] != invite["conversationId"]]
    store["conversations"][invite["conversationId"]] = conversation
    ctx.home.save_store(store)
    out = {
        "status": "joined", "conversationId": invite["conversationId"], "identityId": identity["id"],
        "address": address, "inboxId": inbox, "tag": invite["tag"], "conversationName": invite["name"],
        "profileName": profile_name, "profileImage": profile_image,
    }
    if join_meta:
        out["metadata"] = join_meta
    ctx.output(out)
    return 0


def cmd_list(ctx: Ctx, args: dict, flags: dict) -> int:
    if not ctx.home.identity_exists():
        ctx.output({"message": "No identity found. Create a conversation to initialize: convos conversations create",
                    "count": 0})
        return 0
    ctx.home.load_identity(ctx.env)
    store = ctx.home.load_store()
    if flags.get("sync") and ctx.home.promote_pending(store):
        ctx.home.save_store(store)
    rows = []
    for cid, conv in store["conversations"].items():
        if conv.get("env") != ctx.env:
            continue
        if not conv.get("isActive", True) and not flags.get("include-inactive"):
            continue
        rows.append({"conversationId": cid, "kind": "group", "name": conv.get("name") or "",
                     "createdAt": conv.get("createdAt"), "memberCount": len(conv.get("members") or []),
                     "isActive": conv.get("isActive", True), "isLocked": conv.get("isLocked", False)})
    if not rows:
        ctx.output({"message": "No conversations found. Create one with: convos conversations create", "count": 0})
        return 0
    ctx.output(rows)
    return 0


def history_messages(home: Home) -> list[dict]:
    """Message objects of catchup.ndjson then inbox.ndjson (ids made stable), deduped by id."""
    seen, out = set(), []
    for name in ("catchup.ndjson", "inbox.ndjson"):
        for raw, obj in read_ndjson(home.fake / name):
            if obj.get("event", "message") != "message":
                continue
            mid = obj.get("id") or stable_hex("msg:" + raw, 64)
            if mid in seen:
                continue
            seen.add(mid)
            out.append({**obj, "id": mid})
    return out


def cmd_profiles(ctx: Ctx, args: dict, flags: dict) -> int:
    identity = ctx.home.load_identity(ctx.env)
    store = ctx.home.load_store()
    conv = ctx.home.find_conversation(store, args["id"], ctx.env)
    if not conv:
        raise CLIError(f"Conversation {args['id']} not found")
    inbox = identity["inboxId"]
    members = list(conv.get("members") or [inbox])
    names: dict[str, str] = {}
    for msg in history_messages(ctx.home):
        sender = msg.get("senderInboxId")
        if not sender:
            continue
        if sender not in members:
            members.append(sender)
        name = (msg.get("senderProfile") or {}).get("name")
        if name:
            names[sender] = name
    profiles = []
    for member in members:
        if member == inbox:
            entry = {"inboxId": member, "name": conv.get("profileName"), "image": None, "hasProfile": True,
                     "isMe": True, "source": "message", "memberKind": 1}
            if conv.get("metadata"):
                entry["metadata"] = conv["metadata"]
        elif member in names:
            entry = {"inboxId": member, "name": names[member], "image": None, "hasProfile": True,
                     "isMe": False, "source": "message"}
        else:
            entry = {"inboxId": member, "name": None, "image": None, "hasProfile": False, "isMe": False}
        profiles.append(entry)
    ctx.output({"conversationId": args["id"], "memberCount": len(members),
                "profileCount": sum(1 for p in profiles if p["hasProfile"]), "profiles": profiles})
    return 0


def iso_to_ns(value: str) -> int:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return 0
    return int(dt.timestamp() * 1_000_000) * 1000


def cmd_messages(ctx: Ctx, args: dict, flags: dict) -> int:
    ctx.home.load_identity(ctx.env)
    store = ctx.home.load_store()
    if not ctx.home.find_conversation(store, args["id"], ctx.env):
        raise CLIError(f"Conversation not found: {args['id']}")
    bounds = {}
    for flag in ("sent-before", "sent-after"):
        if flags.get(flag) is not None:
            try:
                bounds[flag] = int(flags[flag])
            except ValueError:
                raise CLIError(f"Invalid value for --{flag}: must be a numeric string") from None
    rows = []
    for msg in history_messages(ctx.home):
        sent_at = msg.get("sentAt") or now_iso()
        ns = iso_to_ns(sent_at)
        if "sent-after" in bounds and not ns > bounds["sent-after"]:
            continue
        if "sent-before" in bounds and not ns < bounds["sent-before"]:
            continue
        rows.append((ns, {"id": msg["id"], "senderInboxId": msg.get("senderInboxId", ""),
                          "contentType": msg.get("contentType") or TEXT_CONTENT_TYPE,
                          "content": msg.get("content", ""), "sentAt": sent_at,
                          "deliveryStatus": msg.get("deliveryStatus", 1)}))
    rows.sort(key=lambda r: r[0], reverse=flags["direction"] == "descending")
    out = [r[1] for r in rows]
    if flags.get("limit") is not None:
        out = out[:max(0, flags["limit"])]
    ctx.output(out)
    return 0


def cmd_reset(ctx: Ctx, args: dict, flags: dict) -> int:
    home = ctx.home
    has_identity = home.identity_exists()
    db_dir = home.path / "db"
    db_files = 0
    if db_dir.is_dir():
        for env_dir in db_dir.iterdir():
            if env_dir.is_dir():
                db_files += len(list(env_dir.iterdir()))
    legacy_dir = home.path / "identities"
    legacy = len([p for p in legacy_dir.iterdir() if p.name.endswith(".json")]) if legacy_dir.is_dir() else 0
    if not has_identity and db_files == 0 and legacy == 0:
        ctx.output({"success": True, "message": "Nothing to reset \u2014 no identity or databases found."})
        return 0
    if not flags.get("force"):
        raise CLIError("Cannot confirm in non-interactive terminal. Use --force to skip confirmation.")
    if has_identity:
        home.identity_path.unlink(missing_ok=True)
    for directory in (legacy_dir, db_dir):
        shutil.rmtree(directory, ignore_errors=True)
    home.store_path.unlink(missing_ok=True)  # the fake's "database" goes with db/
    ctx.output({"success": True, "identityRemoved": has_identity, "legacyIdentitiesRemoved": legacy,
                "dbFilesRemoved": db_files,
                "message": "Identity and conversation data have been destroyed. Your .env configuration has been preserved."})
    return 0


# --------------------------------------------------------------------------- agent serve


class Shutdown(Exception):
    def __init__(self, code: int = 0) -> None:
        super().__init__(code)
        self.code = code


class Server:
    def __init__(self, ctx: Ctx, identity: dict, conversation_id: str, heartbeat: int) -> None:
        self.ctx = ctx
        self.home = ctx.home
        self.identity = identity
        self.inbox = identity["inboxId"]
        self.conversation_id = conversation_id
        self.heartbeat = heartbeat
        self.seen: set[str] = set()
        self.echo_own = (self.home.fake / "echo_own").exists()
        self.inbox_path = self.home.fake / "inbox.ndjson"
        self.inbox_offset = 0
        # Where history ends: the complete lines present before `ready` is printed. Taken here, not
        # after `ready`, so a line a test appends once it saw the agent listening is always live.
        try:
            data = self.inbox_path.read_bytes()
            self.history_end = data.rfind(b"\n") + 1
        except OSError:
            self.history_end = 0
        self.stdin_buf = b""

    # -- output --------------------------------------------------------------

    def emit(self, event: dict) -> None:
        try:
            sys.stdout.write(compact(event) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            raise Shutdown(0) from None

    def error(self, message: str, **details) -> None:
        self.emit({"event": "error", "message": message, **details})

    def sent(self, **fields) -> None:
        self.emit({"event": "sent", **fields})

    # -- incoming ------------------------------------------------------------

    def deliver(self, raw: str, obj: dict, catchup: bool) -> None:
        kind = obj.get("event", "message")
        if kind != "message":
            event = dict(obj)
            if event.get("id"):
                if event["id"] in self.seen:
                    return
                self.seen.add(event["id"])
            event.setdefault("conversationId", self.conversation_id)
            if kind in ("member_joined", "typing", "heartbeat"):
                event.setdefault("timestamp", now_iso())
            if catchup and kind not in ("typing", "read_receipt"):
                event["catchup"] = True
            elif catchup:
                return  # live-only events are never replayed
            if kind == "member_joined" and event.get("inboxId"):
                self.add_member(event["inboxId"])
            self.emit(event)
            return
        mid = obj.get("id") or stable_hex("msg:" + raw, 64)
        if mid in self.seen:
            return
        sender = obj.get("senderInboxId") or ""
        if sender == self.inbox and not self.echo_own:
            return
        self.seen.add(mid)
        event = {"event": "message", "id": mid, "senderInboxId": sender}
        if obj.get("senderProfile"):
            event["senderProfile"] = obj["senderProfile"]
        event["contentType"] = obj.get("contentType") or TEXT_CONTENT_TYPE
        event["content"] = obj.get("content", "")
        for key in ("remoteAttachment", "multiRemoteAttachment"):
            if obj.get(key):
                event[key] = obj[key]
        event["sentAt"] = obj.get("sentAt") or now_iso()
        event["deliveryStatus"] = obj.get("deliveryStatus", 1)
        if catchup:
            event["catchup"] = True
        self.emit(event)

    def add_member(self, inbox_id: str) -> None:
        store = self.home.load_store()
        conv = store["conversations"].get(self.conversation_id)
        if conv is not None and inbox_id not in conv.setdefault("members", []):
            conv["members"].append(inbox_id)
            self.home.save_store(store)

    def read_inbox(self, catchup: bool, until: int | None = None) -> None:
        try:
            with open(self.inbox_path, "rb") as fh:
                fh.seek(self.inbox_offset)
                chunk = fh.read() if until is None else fh.read(max(0, until - self.inbox_offset))
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        complete = chunk[:end + 1]
        self.inbox_offset += len(complete)
        for raw_line in complete.split(b"\n"):
            raw = raw_line.decode("utf-8", "replace").strip()
            if not raw:
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                stderr(f"fake convos: skipping malformed inbox line: {raw[:80]}\n")
                continue
            if isinstance(obj, dict):
                self.deliver(raw, obj, catchup)

    # -- stdin commands (serve.js handleCommand) -----------------------------

    def handle_line(self, line: str) -> None:
        trimmed = line.strip()
        if not trimmed:
            return
        try:
            cmd = json.loads(trimmed)
        except ValueError:
            self.error("Invalid JSON on stdin", input=trimmed)
            return
        append_line(self.home.fake / "sent.ndjson", compact(cmd))
        if cmd is None:
            self.error("Command failed: Cannot read properties of null (reading 'type')", command=None)
            return
        if not isinstance(cmd, dict):
            self.error("Unknown command type: undefined")
            return
        try:
            self.handle_command(cmd)
        except Shutdown:
            raise
        except Exception as exc:  # noqa: BLE001 - mirrors the CLI's catch-all
            self.error(f"Command failed: {exc}", command=cmd)

    def update_conversation(self, **changes) -> None:
        store = self.home.load_store()
        conv = store["conversations"].get(self.conversation_id)
        if conv is not None:
            conv.update(changes)
            self.home.save_store(store)

    def handle_command(self, cmd: dict) -> None:
        ctype = cmd.get("type")
        cid = self.conversation_id
        if ctype == "send":
            if not cmd.get("text"):
                return self.error("send command requires 'text' field")
            event = {"id": rand_hex(32), "text": cmd["text"]}
            if cmd.get("replyTo"):
                event["replyTo"] = cmd["replyTo"]
            event["timestamp"] = now_iso()
            return self.sent(**event)
        if ctype == "react":
            if not cmd.get("messageId") or not cmd.get("emoji"):
                return self.error("react command requires 'messageId' and 'emoji' fields")
            return self.sent(id=rand_hex(32), type="reaction", messageId=cmd["messageId"], emoji=cmd["emoji"],
                             action=cmd.get("action") if cmd.get("action") is not None else "add",
                             timestamp=now_iso())
        if ctype == "attach":
            if not cmd.get("file"):
                return self.error("attach command requires 'file' field")
            path = Path(cmd["file"])
            try:
                content = path.read_bytes()
            except OSError:
                raise RuntimeError(f"ENOENT: no such file or directory, open '{cmd['file']}'") from None
            mime = cmd.get("mimeType") or MIME_TYPES.get(path.suffix.lower(), "application/octet-stream")
            if not self.ctx.upload_provider():
                return self.error("Configure an upload provider (CONVOS_API_KEY or CONVOS_UPLOAD_PROVIDER) to send attachments.")
            event = {"id": rand_hex(32), "type": "attachment", "filename": path.name, "mimeType": mime,
                     "size": len(content), "sendType": "remote", "url": f"https://uploads.fake.invalid/{rand_hex(16)}"}
            if cmd.get("replyTo"):
                event["replyTo"] = cmd["replyTo"]
            event["timestamp"] = now_iso()
            return self.sent(**event)
        if ctype == "remote-attach":
            if not all(cmd.get(k) for k in ("url", "contentDigest", "secret", "salt", "nonce", "contentLength")):
                return self.error("remote-attach command requires 'url', 'contentDigest', 'secret', 'salt', "
                                  "'nonce', and 'contentLength' fields")
            event = {"id": rand_hex(32), "type": "remote-attachment", "url": cmd["url"]}
            if cmd.get("filename") is not None:
                event["filename"] = cmd["filename"]
            event["timestamp"] = now_iso()
            return self.sent(**event)
        if ctype == "rename":
            if not cmd.get("name"):
                return self.error("rename command requires 'name' field")
            self.update_conversation(name=cmd["name"])
            return self.sent(type="rename", name=cmd["name"], conversationId=cid, timestamp=now_iso())
        if ctype == "update-profile":
            if cmd.get("name") is None and cmd.get("image") is None and cmd.get("metadata") is None:
                return self.error("update-profile requires 'name', 'image', and/or 'metadata'")
            if cmd.get("image") not in (None, "") and not self.ctx.upload_provider():
                return self.error("Image upload requires an upload provider. Set CONVOS_API_KEY=<key> or "
                                  "CONVOS_UPLOAD_PROVIDER=convos-api with CONVOS_API_KEY.")
            changes = {}
            if "name" in cmd:
                changes["profileName"] = cmd["name"] or None
            if isinstance(cmd.get("metadata"), dict):
                typed = {k: typed_value(v) for k, v in cmd["metadata"].items()}
                store = self.home.load_store()
                conv = store["conversations"].get(cid) or {}
                changes["metadata"] = {**(conv.get("metadata") or {}), **typed}
            if changes:
                self.update_conversation(**changes)
            event = {"type": "update-profile"}
            for key in ("name", "image"):
                if key in cmd:
                    event[key] = cmd[key]
            if cmd.get("metadata") is not None:
                event["metadata"] = cmd["metadata"]
            event.update(conversationId=cid, timestamp=now_iso())
            return self.sent(**event)
        if ctype in ("lock", "unlock"):
            self.update_conversation(isLocked=ctype == "lock", tag=rand_alnum(10))
            return self.sent(type=ctype, conversationId=cid, timestamp=now_iso())
        if ctype == "explode":
            scheduled = cmd.get("scheduled")
            if scheduled:
                try:
                    expires = datetime.fromisoformat(str(scheduled).replace("Z", "+00:00"))
                    if expires.tzinfo is None:
                        expires = expires.replace(tzinfo=timezone.utc)
                except ValueError:
                    return self.error(f"Invalid scheduled date: {scheduled}")
                if expires <= datetime.now(timezone.utc):
                    return self.error("Scheduled date must be in the future")
                iso = expires.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                return self.sent(type="explode", scheduled=True, conversationId=cid, expiresAt=iso,
                                 timestamp=now_iso())
            store = self.home.load_store()
            conv = store["conversations"].get(cid) or {}
            others = [m for m in conv.get("members") or [] if m != self.inbox]
            self.update_conversation(isActive=False, members=[self.inbox])
            self.sent(type="explode", conversationId=cid, membersRemoved=len(others), expiresAt=now_iso(),
                      timestamp=now_iso())
            raise Shutdown(0)  # the exploded conversation is gone: serve shuts down
        if ctype == "read-receipt":
            return self.sent(id=rand_hex(32), type="read-receipt", conversationId=cid, timestamp=now_iso())
        if ctype == "typing":
            return self.sent(id=rand_hex(32), type="typing", isTyping=cmd.get("isTyping") is not False,
                             conversationId=cid, timestamp=now_iso())
        if ctype == "thinking":
            if cmd.get("state") not in ("start", "stop"):
                return self.error("thinking command requires 'state' to be 'start' or 'stop'")
            if not isinstance(cmd.get("targetMessageId"), str) or not cmd["targetMessageId"]:
                return self.error("thinking command requires non-empty 'targetMessageId' field")
            if not isinstance(cmd.get("content"), str) or not cmd["content"]:
                return self.error("thinking command requires non-empty 'content' field")
            if "resultMessageId" in cmd and cmd["resultMessageId"] is not None:
                if not isinstance(cmd["resultMessageId"], str) or not cmd["resultMessageId"]:
                    return self.error("thinking command 'resultMessageId' must be a non-empty string when provided")
                if cmd["state"] != "stop":
                    return self.error("thinking command 'resultMessageId' is only meaningful with state: 'stop'")
            event = {"id": rand_hex(32), "type": "thinking", "state": cmd["state"],
                     "targetMessageId": cmd["targetMessageId"], "content": cmd["content"]}
            if cmd.get("resultMessageId"):
                event["resultMessageId"] = cmd["resultMessageId"]
            event.update(conversationId=cid, timestamp=now_iso())
            return self.sent(**event)
        if ctype == "connection-invoke":
            if not cmd.get("kind"):
                return self.error("connection-invoke command requires 'kind' field")
            if not cmd.get("action"):
                return self.error("connection-invoke command requires 'action' field")
            return self.sent(id=rand_hex(32), type="connection-invoke",
                             invocationId=cmd.get("invocationId") or f"agent-{rand_hex(4)}",
                             envelopeId=str(uuid.uuid4()).upper(), kind=cmd["kind"],
                             action=cmd["action"], issuedAt=cmd.get("issuedAt") or now_iso(),
                             conversationId=cid, timestamp=now_iso())
        if ctype == "capability-request":
            for key in ("subject", "capability"):
                if not cmd.get(key):
                    return self.error(f"capability-request command requires '{key}' field")
            if not isinstance(cmd.get("rationale"), str) or not cmd["rationale"]:
                return self.error("capability-request command requires non-empty 'rationale' field")
            event = {"id": rand_hex(32), "type": "capability-request",
                     "requestId": cmd.get("requestId") or f"agent-{rand_hex(4)}", "askerInboxId": self.inbox,
                     "subject": cmd["subject"], "capability": cmd["capability"]}
            if cmd.get("preferredProviders"):
                event["preferredProviders"] = cmd["preferredProviders"]
            event.update(conversationId=cid, timestamp=now_iso())
            return self.sent(**event)
        if ctype == "cloud-connection-grant-request":
            for key in ("service", "targetInboxId", "reason"):
                if not isinstance(cmd.get(key), str) or not cmd[key]:
                    return self.error(f"cloud-connection-grant-request command requires non-empty '{key}' field")
            return self.sent(id=rand_hex(32), type="cloud-connection-grant-request", service=cmd["service"],
                             requestedByInboxId=cmd.get("requestedByInboxId") or self.inbox,
                             targetInboxId=cmd["targetInboxId"], conversationId=cid, timestamp=now_iso())
        if ctype == "stop":
            raise Shutdown(0)
        return self.error(f"Unknown command type: {'undefined' if ctype is None else ctype}")

    # -- main loop -----------------------------------------------------------

    def check_die(self) -> None:
        die = self.home.fake / "die"
        if die.exists():
            try:
                die.unlink()
            except OSError:
                pass
            stderr("fake convos: fake/die found, exiting with code 1\n")
            raise Shutdown(1)

    def run(self) -> int:
        def on_signal(signum, frame):  # noqa: ARG001
            stderr("\nShutting down...\n")
            raise Shutdown(0)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            for raw, obj in read_ndjson(self.home.fake / "catchup.ndjson"):
                self.deliver(raw, obj, catchup=True)
            if (self.home.fake / "no_replay").exists():
                self.inbox_offset = self.history_end
            else:
                self.read_inbox(catchup=True, until=self.history_end)
            read_stdin = not os.isatty(0)
            stdin_fd = sys.stdin.fileno() if read_stdin else None
            next_beat = time.monotonic() + self.heartbeat if self.heartbeat > 0 else None
            while True:
                self.check_die()
                if read_stdin:
                    ready, _, _ = select.select([stdin_fd], [], [], POLL_SECONDS)
                    if ready:
                        chunk = os.read(stdin_fd, 65536)
                        if not chunk:  # EOF: readline 'close' → shutdown
                            if self.stdin_buf.strip():
                                self.handle_line(self.stdin_buf.decode("utf-8", "replace"))
                            raise Shutdown(0)
                        self.stdin_buf += chunk
                        while b"\n" in self.stdin_buf:
                            line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
                            self.handle_line(line.decode("utf-8", "replace"))
                else:
                    time.sleep(POLL_SECONDS)
                self.read_inbox(catchup=False)
                if next_beat is not None and time.monotonic() >= next_beat:
                    self.emit({"event": "heartbeat", "conversationId": self.conversation_id,
                               "activeStreams": 2, "timestamp": now_iso()})
                    next_beat += self.heartbeat
        except Shutdown as stop:
            return stop.code


def cmd_serve(ctx: Ctx, args: dict, flags: dict) -> int:
    identity = ctx.home.load_identity(ctx.env)
    inbox = identity["inboxId"]
    store = ctx.home.load_store()
    if args.get("id"):
        conv = ctx.home.find_conversation(store, args["id"], ctx.env)
        if not conv:
            raise CLIError(f"Conversation not found: {args['id']}")
        conversation_id = args["id"]
        if flags.get("profile-name"):
            conv["profileName"] = flags["profile-name"]
            ctx.home.save_store(store)
    else:
        conversation_id = rand_hex(16)
        conv = {
            "env": ctx.env, "name": flags.get("name") or "", "description": flags.get("description") or "",
            "permissions": flags["permissions"], "createdAt": now_iso(), "role": "creator",
            "creatorInboxId": inbox, "tag": rand_alnum(10), "members": [inbox], "isActive": True,
            "isLocked": False, "profileName": flags.get("profile-name") or identity.get("profileName"),
            "metadata": None,
        }
        store["conversations"][conversation_id] = conv
        ctx.home.save_store(store)
    ready = {"event": "ready", "conversationId": conversation_id, "identityId": identity["id"], "inboxId": inbox,
             "address": address_for(identity["walletKey"]), "name": conv.get("name") or ""}
    if not flags.get("no-invite") and conv.get("tag"):
        slug = make_slug(conversation_id, inbox, conv["tag"], conv.get("name") or None)
        url = invite_url(ctx.env, slug)
        qr_path = os.path.join(tempfile.gettempdir(), f"convos-invite-{conversation_id}.png")
        stderr(f"QR code saved to: {qr_path}\nInvite URL: {url}\n")
        ready.update(inviteUrl=url, inviteSlug=slug, inviteTag=conv["tag"], qrCodePath=qr_path)
    ready["timestamp"] = now_iso()
    server = Server(ctx, identity, conversation_id, flags.get("heartbeat") or 0)
    try:
        server.emit(ready)
    except Shutdown as stop:
        return stop.code
    return server.run()


# --------------------------------------------------------------------------- entry point

HANDLERS = {
    "conversations create": cmd_create,
    "conversations join": cmd_join,
    "conversations list": cmd_list,
    "agent serve": cmd_serve,
    "conversation profiles": cmd_profiles,
    "conversation messages": cmd_messages,
    "reset": cmd_reset,
}


def main(argv: list[str]) -> int:
    home = Home(resolve_home(argv))
    try:
        append_line(home.fake / "calls.ndjson", compact(argv))
    except OSError as exc:
        stderr(f"fake convos: cannot record the call: {exc}\n")

    if not argv or argv[0] in ("--help", "-h", "help"):
        stdout_line("A command-line interface for Convos (fake for tests)\n\nUSAGE\n  $ convos [COMMAND]")
        return 0
    if argv[0] in ("--version", "-v", "version"):
        stdout_line(f"@xmtp/convos-cli/{VERSION} {sys.platform}-{platform.machine()} fake-python-{platform.python_version()}")
        return 0

    words = []
    for tok in argv:
        if tok.startswith("-"):
            break
        words.append(tok)
    command = None
    for n in (2, 1):
        if len(words) >= n and " ".join(words[:n]) in REAL_COMMANDS:
            command = " ".join(words[:n])
            break
    if command is None:
        if len(words) == 1 and words[0] in TOPICS:
            stdout_line(f"{words[0]} commands (fake)")
            return 0
        name = " ".join(words) if words else argv[0]
        stderr(f" \u203a   Warning: {name} is not a convos command.\n")
        topic = f" {words[0]}" if words and words[0] in TOPICS else ""
        stderr(f" \u203a   Error: Run convos help{topic} for a list of available commands.\n")
        return 127
    rest = argv[len(command.split()):]
    if "--help" in rest or "-h" in rest:
        stdout_line(f"USAGE\n  $ convos {command} (fake)")
        return 0
    handler = HANDLERS.get(command)
    if handler is None:
        print_error(f"fake convos does not implement '{command}'")
        return 2
    try:
        args, flags = parse_argv(SPECS[command], rest)
        ctx = Ctx(home, flags)
        return handler(ctx, args, flags)
    except CLIError as exc:
        print_error(exc.message, see_help=exc.see_help)
        return exc.exit_code
    except RuntimeError as exc:
        print_error(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
