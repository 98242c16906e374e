"""Issue 14's findings, one class each, reproduced on the fake infra provider (the real services
layer, real HTTP to in-memory instances) and the test databases (PostgreSQL under `make test`).

Each test failed on the code before the fix; together they pin down that one customer's agent
never reaches another and that every recovery path owns the row before it acts.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import timedelta

import pytest
import responses
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from convos.errors import UpstreamFailed, Unavailable
from pool_app.models import Instance, InstanceEvent, InstanceStatus as S
from pool_app.services import instance_claim, pool_tick
from services_app import facade, services
from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from services_app.providers.fake import FakeProvider, fake_instance
from templates_app.models import AgentTemplate
from tests.conftest import ALL_DATABASES, wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
# A claim on a thread of its own racing the tick: both must see committed rows and each other's row locks.
RACING_A_CLAIM = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
AGENTMAIL = "https://agentmail.test/v0"
ALICE_KEY = f"test-alice-telnyx-{secrets.token_hex(12)}"  # generated: no key-shaped literal in the repository
ALICE_CONFIG = {"telnyxApiKey": ALICE_KEY, "telnyxPhoneNumber": "+15551234567"}


def _fill(settings, n: int) -> list[Instance]:
    settings.POOL_MIN_IDLE = n
    wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).count() == n, timeout=20, interval=0.1, message=f"{n} idle")
    settings.POOL_MIN_IDLE = 0
    return list(Instance.objects.filter(status=S.IDLE).order_by("created_at"))


@pytest.fixture
def fake_pool(settings, pool_work_inline):
    settings.INFRA_PROVIDER = "fake"
    settings.OPENROUTER_MANAGEMENT_KEY = ""
    settings.AGENTMAIL_API_URL = AGENTMAIL
    settings.AGENTMAIL_API_KEY = f"test-account-{secrets.token_hex(8)}"
    settings.POOL_IDLE_AUDIT_SAMPLE = 0  # the audit has its own test; here ticks change only what a test sets up
    yield
    for instance_id in InstanceInfra.objects.using("services").values_list("instance_id", flat=True):
        services.instance_destroy(instance_id=instance_id)


@pytest.fixture
def agentmail():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+/"))  # the fake instances
        counter = iter(range(1, 1000))

        def create_inbox(request):
            n = next(counter)
            return 200, {}, f'{{"inbox_id": "agent{n}@mail.test", "email": "agent{n}@mail.test"}}'

        rsps.add_callback(responses.POST, f"{AGENTMAIL}/inboxes", callback=create_inbox)
        rsps.add(responses.POST, re.compile(rf"{AGENTMAIL}/inboxes/[^/]+/api-keys"), json={"api_key": f"test-scoped-{secrets.token_hex(8)}", "api_key_id": "k1"})
        rsps.add(responses.GET, re.compile(rf"{AGENTMAIL}/inboxes/[^/]+/api-keys"), json={"api_keys": [{"api_key_id": "k1"}]})
        rsps.add(responses.DELETE, re.compile(rf"{AGENTMAIL}/inboxes/[^/]+/api-keys/k1"), status=204)
        rsps.add(responses.DELETE, re.compile(rf"{AGENTMAIL}/inboxes/[^/]+$"), status=204)
        yield rsps


def _template(*, tools, creator: str = "") -> AgentTemplate:
    return AgentTemplate.objects.create(creator_id=creator, agent_name="Concierge", instructions="Book things.",
                                        visibility="public", model={"default": "", "allow_override": False}, tools=tools)


def _claim(**kwargs):
    from pool_app.services.claim import claim_spec

    return instance_claim(spec=claim_spec(**kwargs), actor="api")


def _bind_behind_the_pools_back(instance_id: str) -> str:
    """What a late claim (or a stray caller) leaves: the instance serves a conversation the pool
    does not know about, while its row still says idle."""
    return services.instance_configure(instance_id=instance_id, agent_name="Stray", instructions="Someone else's.")["conversationId"]


def _holds(instance_id: str, secret: str) -> bool:
    fake = fake_instance(instance_id)
    return fake is not None and (secret in fake.credentials.values() or any(secret in d.values() for d in fake.credentials_received))


class TestFinding1CredentialsOfOneUserReachTheNext:
    def test_it_keeps_a_crashed_instance_out_of_the_pool_until_a_reset_reports_it_clean(self, settings, fake_pool):
        settings.POOL_MAX_RESET_FAILURES = 10
        victim, other = _fill(settings, 2)
        fake_instance(victim.pk).provision_fail = True
        fake_instance(victim.pk).reset_clean = False
        template = _template(tools=[{"id": "sms", "provisioning": "user"}])
        with pytest.raises(UpstreamFailed):
            _claim(template_id=template.pk, user_config=ALICE_CONFIG, owner_id="alice")
        assert Instance.objects.get(pk=victim.pk).status == S.CRASHED

        for _ in range(3):
            pool_tick()
        assert Instance.objects.get(pk=victim.pk).status != S.IDLE, "a dirty instance went back to idle"
        bob = _claim(agent_name="Bob's agent", instructions="Hi.", owner_id="bob")
        assert bob.instance_id != victim.pk
        assert not _holds(bob.instance_id, ALICE_KEY)

        fake_instance(victim.pk).reset_clean = True  # the instance can be cleaned now
        pool_tick()
        assert Instance.objects.get(pk=victim.pk).status == S.IDLE
        assert services.instance_convos_status(instance_id=victim.pk)["clean"] is True

    def test_it_an_instance_that_never_resets_clean_is_replaced(self, settings, fake_pool):
        settings.POOL_MAX_RESET_FAILURES = 2
        (victim,) = _fill(settings, 1)
        fake_instance(victim.pk).provision_fail = True
        fake_instance(victim.pk).reset_clean = False
        with pytest.raises(UpstreamFailed):
            _claim(agent_name="A", instructions="", owner_id="alice")
        settings.POOL_MIN_IDLE = 1
        wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).exists(), timeout=20, interval=0.1, message="a replacement")
        assert Instance.objects.get(pk=victim.pk).status == S.DELETED
        assert fake_instance(victim.pk) is None

    def test_it_sends_user_credentials_only_to_an_instance_that_accepted_the_binding(self, settings, fake_pool):
        bound, spare = _fill(settings, 2)
        _bind_behind_the_pools_back(bound.pk)
        template = _template(tools=[{"id": "sms", "provisioning": "user"}])
        result = _claim(template_id=template.pk, user_config=ALICE_CONFIG, owner_id="alice")
        assert result.instance_id == spare.pk
        assert not _holds(bound.pk, ALICE_KEY), "alice's key reached an instance bound to someone else"
        assert _holds(spare.pk, ALICE_KEY)


class TestFinding2SelfProvisioningHasNoLimits:
    @staticmethod
    def _as_instance(instance_id: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {fake_instance(instance_id).variables['INSTANCE_SERVICES_TOKEN']}")
        return client

    def test_it_refuses_an_unclaimed_instance(self, settings, fake_pool):
        (idle,) = _fill(settings, 1)
        held = InstanceService.objects.using("services").filter(instance_id=idle.pk)
        before = held.count()  # the always-on tools it was created with
        answer = self._as_instance(idle.pk).post(f"/services/provision/{idle.pk}/email", {}, format="json")
        assert answer.status_code == 403, answer.content
        assert held.count() == before

    def test_it_allows_only_the_templates_tools_once_each_and_logs_every_call(self, settings, fake_pool, agentmail):
        _fill(settings, 1)
        template = _template(tools=[{"id": "email", "provisioning": "pool"}])
        claimed = _claim(template_id=template.pk, owner_id="alice")
        me = self._as_instance(claimed.instance_id)
        assert me.post(f"/services/provision/{claimed.instance_id}/wallet", {}, format="json").status_code == 403
        first = me.post(f"/services/provision/{claimed.instance_id}/email", {}, format="json")
        again = me.post(f"/services/provision/{claimed.instance_id}/email", {}, format="json")
        assert first.status_code == 200 and again.status_code == 200, (first.content, again.content)
        assert again.json()["resourceId"] == first.json()["resourceId"]
        live = InstanceService.objects.using("services").filter(instance_id=claimed.instance_id, tool_id="email",
                                                                status=ResourceStatus.ACTIVE)
        assert live.count() == 1
        events = InstanceEvent.objects.filter(instance_id=claimed.instance_id, actor="instance")
        assert events.count() == 3 and any("refused" in e.reason for e in events)

    def test_it_rate_limits_each_instance(self, settings, fake_pool, agentmail):
        settings.SELF_PROVISION_MAX_PER_HOUR = 2
        _fill(settings, 1)
        template = _template(tools=[{"id": "email", "provisioning": "pool"}])
        claimed = _claim(template_id=template.pk, owner_id="alice")
        me = self._as_instance(claimed.instance_id)
        codes = [me.post(f"/services/provision/{claimed.instance_id}/email", {}, format="json").status_code for _ in range(3)]
        assert codes == [200, 200, 429]

    def test_it_an_instance_may_not_pass_user_credentials_for_itself(self, settings, fake_pool):
        settings.SELF_PROVISION_TOOLS = ["sms"]
        _fill(settings, 1)
        claimed = _claim(agent_name="A", instructions="", owner_id="alice")
        answer = self._as_instance(claimed.instance_id).post(
            f"/services/provision/{claimed.instance_id}/sms", {"userConfig": ALICE_CONFIG}, format="json")
        assert answer.status_code == 403


class TestFinding3RecoveryThatWipesALiveAgent:
    @RACING_A_CLAIM
    def test_it_never_wipes_a_claim_that_completes_while_the_tick_recovers_it(self, settings, fake_pool, monkeypatch):
        (victim,) = _fill(settings, 1)
        configured, go_on = threading.Event(), threading.Event()
        real_configure, real_reset = facade.configure, facade.reset

        def configure_then_look_stale(instance_id, **kwargs):
            answer = real_configure(instance_id, **kwargs)
            Instance.objects.filter(pk=instance_id).update(claim_started_at=timezone.now() - timedelta(hours=1))
            configured.set()
            go_on.wait(10)  # the claim is just completing when the tick comes
            return answer

        def reset_then_let_the_claim_finish(instance_id):
            answer = real_reset(instance_id)
            go_on.set()
            time.sleep(0.5)  # the claim's last step runs now
            return answer

        monkeypatch.setattr(facade, "configure", configure_then_look_stale)
        monkeypatch.setattr(facade, "reset", reset_then_let_the_claim_finish)
        outcome: dict = {}

        def claim() -> None:
            try:
                outcome["result"] = _claim(agent_name="Live", instructions="Keep me.", owner_id="alice")
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                outcome["error"] = exc
            finally:
                connections.close_all()

        thread = threading.Thread(target=claim)
        thread.start()
        assert configured.wait(10)
        pool_tick()
        go_on.set()
        thread.join(20)

        row = Instance.objects.get(pk=victim.pk)
        seen = services.instance_convos_status(instance_id=victim.pk)
        if row.status == S.CLAIMED:
            assert seen["conversationId"] == row.conversation_id, "claimed row, wiped agent"
            assert "result" in outcome
        else:
            assert "error" in outcome and "result" not in outcome
            assert row.status != S.IDLE or seen["clean"] is True


class TestFinding4ALateClaimLeavesABoundInstanceIdle:
    def test_it_takes_an_instance_answering_409_out_of_the_pool_and_replaces_it(self, settings, fake_pool):
        (bound,) = _fill(settings, 1)
        _bind_behind_the_pools_back(bound.pk)
        with pytest.raises((Unavailable, UpstreamFailed)):
            _claim(agent_name="A", instructions="", owner_id="alice")
        assert Instance.objects.get(pk=bound.pk).status == S.TAINTED
        settings.POOL_MIN_IDLE = 1
        wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).exists(), timeout=20, interval=0.1, message="a replacement")
        result = _claim(agent_name="B", instructions="", owner_id="bob")
        assert result.instance_id != bound.pk

    # The audit asks instances on threads of its own (its batch deadline needs them, whatever the
    # concurrency), and those look the instances up in services' database: the rows must be committed.
    @pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
    def test_it_audits_idle_instances_and_takes_a_bound_one_out(self, settings, fake_pool):
        bound, clean = _fill(settings, 2)
        _bind_behind_the_pools_back(bound.pk)
        settings.POOL_IDLE_AUDIT_SAMPLE = 10
        report = pool_tick()
        assert report["steps"]["audit_idle"]["bound"] == 1
        assert Instance.objects.get(pk=bound.pk).status == S.TAINTED
        assert Instance.objects.get(pk=clean.pk).status == S.IDLE

    @RACING_A_CLAIM
    def test_it_a_late_claim_rolls_back_its_tools_and_leaves_the_instance_clean(self, settings, fake_pool, agentmail):
        (victim,) = _fill(settings, 1)
        settings.CLAIM_TIMEOUT_MS = 300
        fake_instance(victim.pk).provision_delay_s = 1.5  # the tick's recovery overtakes the provision
        template = _template(tools=[{"id": "email", "provisioning": "pool"}])
        outcome: dict = {}

        def claim() -> None:
            try:
                outcome["result"] = _claim(template_id=template.pk, owner_id="alice")
            except Exception as exc:  # noqa: BLE001
                outcome["error"] = exc
            finally:
                connections.close_all()

        thread = threading.Thread(target=claim)
        thread.start()
        time.sleep(0.6)
        pool_tick()  # recovers the claim, older than CLAIM_TIMEOUT_MS
        thread.join(20)
        assert isinstance(outcome.get("error"), UpstreamFailed), outcome
        row = Instance.objects.get(pk=victim.pk)
        seen = services.instance_convos_status(instance_id=victim.pk)
        assert row.status != S.IDLE or (seen["conversationId"] is None and seen["clean"] is True)
        assert not InstanceService.objects.using("services").filter(
            instance_id=victim.pk, tool_id="email", status__in=[ResourceStatus.ACTIVE, ResourceStatus.DESTROY_FAILED]).exists()


class TestFinding5RowsStuckInCreation:
    def test_it_an_unexpected_error_while_creating_never_leaves_a_row_the_tick_ignores(self, settings, fake_pool, monkeypatch):
        real_create = facade.create_instance
        failures = iter([RuntimeError("boom after the provider created it")])

        def create_once_failing(instance_id):
            created = real_create(instance_id)
            error = next(failures, None)
            if error:
                raise error
            return created

        monkeypatch.setattr(facade, "create_instance", create_once_failing)
        settings.POOL_MIN_IDLE = 1
        wait_until(lambda: pool_tick() and Instance.objects.filter(status=S.IDLE).exists(), timeout=20, interval=0.1, message="an idle instance")
        assert not Instance.objects.filter(deploy_status="creating").exclude(status=S.DELETED).exists()
        failed = Instance.objects.filter(status=S.DELETED).first()
        assert failed is not None and fake_instance(failed.pk) is None, "the provider kept what the failed create made"

    def test_it_a_row_left_creating_by_a_killed_worker_is_reconciled_and_its_infra_destroyed(self, settings, fake_pool):
        row = Instance.objects.create(status=S.STARTING, deploy_status="creating", created_at=timezone.now() - timedelta(hours=1))
        FakeProvider().create(instance_id=row.pk, variables={})  # created at the provider; the worker died before recording it
        settings.POOL_MIN_IDLE = 1
        report = pool_tick()
        assert report["steps"]["reconcile_creations"]["abandoned"] == 1
        assert Instance.objects.get(pk=row.pk).status == S.DELETED
        assert fake_instance(row.pk) is None
        assert report["steps"]["top_up"]["requested"] == 1
