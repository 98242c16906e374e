"""Local infra provider: each instance is one `python -m runtime` process on this machine.

It behaves like Railway where the pool can tell: an instance gets its own data directory (its
"volume"), its variables are fixed before it boots, it keeps running when the pool stops, and a
stopped instance reports SLEEPING until it is started again. The variables live in the instance's
own directory (mode 0600), as Railway keeps a service's variables; services' database never holds
them.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from services_app.providers.base import INSTANCE_ID_RE, DeployState, InfraRef, OwnedResource, ProviderError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = "instance.env.json"

# Started through a short-lived launcher so the runtime is orphaned at once and adopted by init:
# the pool's own processes (gunicorn, celery) then never keep zombies of instances that exit, and
# the runtime, leading its own session, survives the pool being stopped. Variables travel on
# stdin, never on a command line that `ps` would show.
_LAUNCHER = """
import json, subprocess, sys
spec = json.load(sys.stdin)
log = open(spec["log"], "ab")
proc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
print(proc.pid)
"""


@dataclass
class LocalProvider:
    name = "local"
    instances_dir: Path
    host: str
    boot_seconds: float
    python: str
    extra_env: dict[str, str]

    @classmethod
    def from_settings(cls) -> "LocalProvider":
        from django.conf import settings

        return cls(
            instances_dir=Path(settings.LOCAL_INSTANCES_DIR),
            host=settings.LOCAL_INSTANCE_HOST,
            boot_seconds=settings.LOCAL_RUNTIME_BOOT_SECONDS,
            python=settings.LOCAL_RUNTIME_PYTHON or sys.executable,
            extra_env={k: str(v) for k, v in settings.LOCAL_RUNTIME_ENV.items()},
        )

    # --- InfraProvider ---------------------------------------------------------------------------
    def create(self, *, instance_id: str, variables: dict[str, str]) -> InfraRef:
        home = self.instances_dir / instance_id
        if home.exists():
            raise ProviderError(f"Local instance directory {home} already exists", permanent=True)
        (home / "data").mkdir(parents=True, mode=0o700)
        env_path = home / ENV_FILE
        fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(variables, handle)
        try:
            state = self._start(instance_id, home, port=None)
        except Exception:
            shutil.rmtree(home, ignore_errors=True)
            raise
        return InfraRef(instance_id=instance_id, url=self._url(state["port"]), image_tag="local", provider_state=state)

    def destroy(self, ref: InfraRef) -> None:
        self._stop_process(ref)
        home = self._home(ref)
        if home.exists():
            shutil.rmtree(home, ignore_errors=False)

    def deploy_states(self, refs: list[InfraRef], *, full: bool = True) -> dict[str, DeployState]:
        states: dict[str, DeployState] = {}
        for ref in refs:
            state = ref.provider_state or {}
            if state.get("stopped"):
                status = "SLEEPING"
            elif _is_runtime_process(state.get("pid"), ref.instance_id):
                status = "SUCCESS"
            elif not self._home(ref).exists():
                status = "REMOVED"
            else:
                status = "CRASHED"
            states[ref.instance_id] = DeployState(deploy_status=status, url=ref.url)
        return states

    def redeploy(self, ref: InfraRef) -> InfraRef:
        self._stop_process(ref)
        return self.start(ref)

    def destroy_unrecorded(self, instance_id: str) -> bool:
        home = self.instances_dir / instance_id
        pids = [pid for pid in list_runtime_processes(self.instances_dir) if _is_runtime_process(pid, instance_id)]
        for pid in pids:
            self._stop_process(InfraRef(instance_id=instance_id, provider_state={"pid": pid}))
        found = bool(pids) or home.exists()
        if home.exists():
            shutil.rmtree(home, ignore_errors=False)
        return found

    def list_owned(self) -> list[OwnedResource]:
        """Instance data directories under LOCAL_INSTANCES_DIR (a directory named by an instance id
        holding the instance's env file or data), and live runtimes whose data lives there, one
        resource per instance id. The age is the directory's mtime (never older than the truth:
        a young instance is never taken for an old orphan); a process without a directory is as old
        as its /proc entry (about its start)."""
        found: dict[str, OwnedResource] = {}
        if self.instances_dir.is_dir():
            for home in self.instances_dir.iterdir():
                if not (home.is_dir() and re.fullmatch(INSTANCE_ID_RE, home.name)):
                    continue
                if not ((home / ENV_FILE).exists() or (home / "data").is_dir()):
                    continue  # not laid out by create(): not the pool's
                created = datetime.fromtimestamp(home.stat().st_mtime, tz=timezone.utc)
                found[home.name] = OwnedResource(resource_id=str(home), name=home.name, instance_id=home.name, created_at=created)
        for pid in list_runtime_processes(self.instances_dir):
            instance_id = _environ_value(pid, "INSTANCE_ID")
            if instance_id and re.fullmatch(INSTANCE_ID_RE, instance_id) and instance_id not in found:
                try:
                    started = datetime.fromtimestamp(Path(f"/proc/{pid}").stat().st_mtime, tz=timezone.utc)
                except OSError:
                    continue  # gone meanwhile
                found[instance_id] = OwnedResource(resource_id=f"pid:{pid}", name=instance_id, instance_id=instance_id, created_at=started)
        return sorted(found.values(), key=lambda r: r.instance_id)

    def destroy_owned(self, resource: OwnedResource) -> None:
        self.destroy_unrecorded(resource.instance_id)

    # --- local-only operations (the pool's stop/start of a development fleet) ---------------------
    def stop(self, ref: InfraRef) -> InfraRef:
        self._stop_process(ref)
        state = dict(ref.provider_state, stopped=True, pid=None)
        return InfraRef(**{**ref.__dict__, "provider_state": state})

    def start(self, ref: InfraRef) -> InfraRef:
        """Start a stopped (or crashed) instance again on its data, preferably on the same port."""
        if _is_runtime_process(ref.provider_state.get("pid"), ref.instance_id):
            return ref
        home = self._home(ref)
        if not (home / ENV_FILE).exists():
            raise ProviderError(f"Local instance {ref.instance_id} has no data directory left", permanent=True)
        state = self._start(ref.instance_id, home, port=ref.provider_state.get("port"))
        return InfraRef(**{**ref.__dict__, "url": self._url(state["port"]), "provider_state": state})

    # --- internals ---------------------------------------------------------------------------------
    def _home(self, ref: InfraRef) -> Path:
        return Path(ref.provider_state.get("home") or self.instances_dir / ref.instance_id)

    def _url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def _start(self, instance_id: str, home: Path, *, port: int | None) -> dict:
        variables = json.loads((home / ENV_FILE).read_text())
        if port is None or not _port_is_free(self.host, port):
            port = _free_port(self.host)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",
            # A local agent is talked to through the pool (`manage.py chat`); LOCAL_RUNTIME_ENV may
            # say RUNTIME_CHANNEL=convos on a machine with the Convos CLI and network.
            "RUNTIME_CHANNEL": "loopback",
            **self.extra_env,
            **variables,
            "HOST": self.host,
            "PORT": str(port),
            "RUNTIME_DATA_DIR": str(home / "data"),
            "RUNTIME_BOOT_SECONDS": str(self.boot_seconds),
        }
        spec = {
            "argv": [self.python, "-m", "runtime"],
            "cwd": str(REPO_ROOT),
            "env": env,
            "log": str(home / "runtime.log"),
        }
        try:
            launched = subprocess.run(
                [self.python, "-c", _LAUNCHER], input=json.dumps(spec), capture_output=True, text=True, timeout=30, check=True
            )
            pid = int(launched.stdout.strip())
        except (subprocess.SubprocessError, ValueError, OSError) as exc:
            raise ProviderError(f"Could not start the runtime for {instance_id}: {exc.__class__.__name__}") from exc
        logger.info("local instance %s started (pid %s, port %s)", instance_id, pid, port)
        return {"pid": pid, "port": port, "home": str(home), "stopped": False}

    def _stop_process(self, ref: InfraRef, timeout: float = 10.0) -> None:
        pid = ref.provider_state.get("pid")
        if not _is_runtime_process(pid, ref.instance_id):
            return
        # The runtime leads its own process group: signalling the group stops its children too.
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_runtime_process(pid, ref.instance_id):
                return
            time.sleep(0.05)
        logger.warning("local instance %s did not stop on SIGTERM; killing it", ref.instance_id)
        _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _is_runtime_process(pid: int | None, instance_id: str) -> bool:
    """True if `pid` is a live (not zombie) runtime of this instance; guards against pid reuse."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs (macOS): the best we can do is a signal probe
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        environ = (proc / "environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    return f"INSTANCE_ID={instance_id}".encode() in environ


def _environ_value(pid: int, name: str) -> str:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    prefix = f"{name}=".encode()
    return next((item[len(prefix):].decode(errors="replace") for item in environ if item.startswith(prefix)), "")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def list_runtime_processes(instances_dir: Path) -> list[int]:
    """Every live runtime process whose data lives under `instances_dir` (for `make stop` checks)."""
    pids: list[int] = []
    marker = f"RUNTIME_DATA_DIR={instances_dir}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def stop_strays(instances_dir: Path) -> int:
    """Stop runtime processes under `instances_dir` that no instance record knows (e.g. after the
    services database was reset), so stopping the fleet really leaves nothing running."""
    pids = list_runtime_processes(instances_dir)
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        time.sleep(0.05)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)
    return len(pids)


def _is_zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
