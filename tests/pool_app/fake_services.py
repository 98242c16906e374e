"""An in-memory stand-in for the services facade, for tests of the pool's own logic.

It replaces the facade's functions (the pool's only door into services), so the pool code under
test runs unchanged; provider behaviour itself is tested against real processes and `responses`.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from services_app import facade
from services_app.services import ServicesError


@dataclass
class FakeInstance:
    deploy_status: str = "SUCCESS"
    healthy: bool = True
    bound: bool = False
    clean_after_reset: bool = True


@dataclass
class FakeServices:
    instances: dict[str, FakeInstance] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    configured: list[str] = field(default_factory=list)
    batch_error: str | None = None
    configure_error: ServicesError | None = None
    configure_delay: float = 0.0
    pending: set[str] = field(default_factory=set)
    tokens: dict[str, str] = field(default_factory=dict)  # services token -> instance id
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: itertools.count = field(default_factory=itertools.count)

    def _count(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def create_instance(self, instance_id: str) -> dict[str, str]:
        self._count("create_instance")
        with self.lock:
            self.instances[instance_id] = FakeInstance()
        return {"instanceId": instance_id, "url": f"http://fake.test/{instance_id}"}

    def destroy(self, instance_id: str) -> dict[str, bool]:
        self._count("destroy")
        with self.lock:
            self.instances.pop(instance_id, None)
        return {"ok": True}

    def abandon_creation(self, instance_id: str) -> dict[str, Any]:
        self._count("abandon_creation")
        with self.lock:
            found = self.instances.pop(instance_id, None) is not None
        return {"ok": True, "pendingResources": 0, "found": found}

    def status_batch(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        self._count("status_batch")
        if self.batch_error:
            raise ServicesError(self.batch_error)
        answer = {}
        for instance_id in instance_ids:
            fake = self.instances.get(instance_id)
            if fake is None:
                continue
            healthy = fake.deploy_status == "SUCCESS" and fake.healthy
            coarse = "healthy" if healthy else ("sleeping" if fake.deploy_status == "SLEEPING" else "unreachable")
            if fake.deploy_status in ("FAILED", "CRASHED", "REMOVED"):
                coarse = "deploy_failed"
            answer[instance_id] = {"status": coarse, "deployStatus": fake.deploy_status, "healthy": healthy, "url": f"http://fake.test/{instance_id}"}
        return answer

    def configure(self, instance_id: str, *, agent_name: str, instructions: str, join_url: str | None = None, **_: Any) -> dict[str, Any]:
        self._count("configure")
        if self.configure_delay:
            time.sleep(self.configure_delay)
        if self.configure_error:
            raise self.configure_error
        with self.lock:
            self.configured.append(instance_id)
            fake = self.instances.setdefault(instance_id, FakeInstance())
            if fake.bound:
                raise ServicesError("already bound", code="already_bound", status_code=409)
            fake.bound = True
        n = next(self._seq)
        status = "pending_acceptance" if instance_id in self.pending else ("joined" if join_url else "created")
        return {"ok": True, "conversationId": f"conv{n:028d}", "inviteUrl": join_url or f"https://dev.convos.org/v2?i=slug{n}",
                "joined": status == "joined", "status": status}

    def reset(self, instance_id: str) -> dict[str, Any]:
        self._count("reset")
        fake = self.instances.setdefault(instance_id, FakeInstance())
        fake.bound = not fake.clean_after_reset
        return {"conversationId": None, "inboxId": "x", "pending": False, "clean": fake.clean_after_reset}

    def convos_status(self, instance_id: str) -> dict[str, Any]:
        self._count("convos_status")
        fake = self.instances.setdefault(instance_id, FakeInstance())
        pending = instance_id in self.pending
        return {"conversationId": "conv-accepted" if fake.bound else None, "inboxId": "x", "pending": pending, "clean": not fake.bound}

    def convos_status_batch(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        self._count("convos_status_batch")
        answers: dict[str, dict[str, Any]] = {}
        for instance_id in instance_ids:
            try:
                answers[instance_id] = self.convos_status(instance_id)
            except ServicesError as exc:
                answers[instance_id] = {"error": exc.message}
        return answers

    def instance_for_token(self, token: str) -> str | None:
        self._count("instance_for_token")
        return self.tokens.get(token)

    def redeploy(self, instance_id: str) -> dict[str, bool]:
        self._count("redeploy")
        return {"ok": True}

    def teardown_retry(self) -> dict[str, int]:
        self._count("teardown_retry")
        return {"pending": 0, "finished": 0}

    def orphan_sweep(self, *, delete_allowed: bool = True) -> dict[str, Any]:
        self._count("orphan_sweep")
        return {"at": "", "delete": False, "graceMs": 0, "providers": {}, "errors": {}}

    def instance_info(self, instance_id: str) -> dict[str, Any]:
        self._count("instance_info")
        if instance_id not in self.instances:
            raise ServicesError(f"Unknown instance {instance_id}", code="not_found", status_code=404)
        return {"instanceId": instance_id, "provider": "fake", "url": f"http://fake.test/{instance_id}", "railwayProjectId": "",
                "railwayServiceId": "", "railwayEnvironmentId": "", "imageTag": "fake:latest", "runtimeKind": "", "runtimeModel": "",
                "lastError": "", "createdAt": None, "boundAt": None, "tornDownAt": None,
                "resources": [{"toolId": "wallet", "resourceId": f"0xfake{instance_id}", "status": "active", "lastError": "",
                               "provisionedAt": None, "destroyedAt": None}]}

    def install(self, monkeypatch) -> "FakeServices":
        for name in ("create_instance", "abandon_creation", "destroy", "status_batch", "configure", "reset", "convos_status", "convos_status_batch", "redeploy", "teardown_retry",
                     "instance_for_token", "instance_info", "orphan_sweep"):
            monkeypatch.setattr(facade, name, getattr(self, name))
        return self
