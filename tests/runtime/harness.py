"""Starting the real runtime (`python -m runtime`) as a subprocess on a free port, with its own
data directory, and talking to it over HTTP exactly like the pool does."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-gateway-token-123"
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Runtime:
    """A running ``python -m runtime`` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    token: str | None = TOKEN

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def get(self, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = self.auth() if auth else {}
        headers.update(kwargs.pop("headers", {}))
        return requests.get(self.url + path, headers=headers, timeout=10, **kwargs)

    def post(self, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = self.auth() if auth else {}
        headers.update(kwargs.pop("headers", {}))
        return requests.post(self.url + path, headers=headers, timeout=10, **kwargs)

    def provision(self, **body: Any) -> requests.Response:
        payload = {"agentName": "Test Agent", "instructions": "Be helpful."}
        payload.update(body)
        return self.post("/pool/provision", json=payload)

    def status(self) -> dict[str, Any]:
        response = self.get("/convos/status")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_until_listening(self) -> requests.Response:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"runtime exited early:\n{self.log()}")
            try:
                return requests.get(self.url + "/pool/health", timeout=1)
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"runtime did not start:\n{self.log()}")

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.wait_until_listening().status_code == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"runtime never became ready:\n{self.log()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class RuntimeFactory:
    tmp_path: Path
    started: list[Runtime] = field(default_factory=list)

    def __call__(
        self,
        *,
        data_dir: Path | None = None,
        token: str | None = TOKEN,
        wait: bool = True,
        **env_overrides: str,
    ) -> Runtime:
        port = _free_port()
        data_dir = data_dir or self.tmp_path / "data"
        log_path = self.tmp_path / f"runtime-{len(self.started)}.log"
        env = {
            key: value
            for key, value in os.environ.items()
            # Keep the parent's knobs from leaking into the subprocess.
            if not key.startswith("RUNTIME_") and key not in {"GATEWAY_TOKEN", "XMTP_ENV"}
        }
        env.update(
            PORT=str(port),
            HOST="127.0.0.1",
            RUNTIME_DATA_DIR=str(data_dir),
            INSTANCE_ID="test-instance",
            PYTHONUNBUFFERED="1",
        )
        if token is not None:
            env["GATEWAY_TOKEN"] = token
        env.update(env_overrides)
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runtime"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        runtime = Runtime(proc=proc, port=port, data_dir=data_dir, log_path=log_path, token=token)
        self.started.append(runtime)
        if wait:
            runtime.wait_until_ready()
        return runtime

    def cleanup(self) -> None:
        for runtime in self.started:
            if runtime.proc.poll() is None:
                runtime.proc.terminate()
                try:
                    runtime.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    runtime.proc.kill()
                    runtime.proc.wait(timeout=5)


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
