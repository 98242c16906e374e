"""Invite links, one rule (runtime/invites.py): the pool and the runtime accept exactly the same links
and agree on their canonical form, so a link the pool takes never costs an instance a reset and the
client a 502."""
from __future__ import annotations

import pytest
from rest_framework import serializers

from pool_app.apis import _join_url
from pool_app.models import Instance, InstanceStatus
from pool_app.services import pool_tick
from pool_app.services.claim import Invalid, claim_spec
from runtime.limits import JOIN_URL_MAX
from runtime.validation import ValidationError, validate_provision
from services_app import services
from services_app.models import InstanceInfra
from services_app.providers.fake import fake_instance
from tests.conftest import ALL_DATABASES

CLAIM = "/api/pool/claim"
SLUG = "Room-invite_code*Part2"
DEV = "https://dev.convos.org/v2?i={slug}"
PRODUCTION = "https://popup.convos.org/v2?i={slug}"
BOTH = (DEV, PRODUCTION)

# (link with a {slug} placeholder, canonical form on dev (or None: refused), on production).
LINKS = [
    # What Convos clients produce.
    ("https://dev.convos.org/v2?i={slug}", DEV, None),
    ("https://popup.convos.org/v2?i={slug}", None, PRODUCTION),
    ("https://convos.app/join/{slug}", *BOTH),
    ("convos://join/{slug}", *BOTH),
    ("{slug}", *BOTH),
    # Spellings of those that mean the same invite.
    ("https://dev.convos.org/v2/?i={slug}", DEV, None),
    ("https://popup.convos.org/v2/?i={slug}", None, PRODUCTION),
    ("HTTPS://DEV.Convos.ORG/v2?i={slug}", DEV, None),
    ("https://dev.convos.org/v2?i={slug}&utm_source=share#top", DEV, None),
    ("https://convos.app/join/{slug}/", *BOTH),
    ("  {slug}\n", *BOTH),
    # Odd links the pool used to pass and the instance refused.
    ("https://me@dev.convos.org/v2?i={slug}", None, None),
    ("https://me:pw@popup.convos.org/v2?i={slug}", None, None),
    ("https://dev.convos.org:8443/v2?i={slug}", None, None),
    ("https://dev.convos.org:443/v2?i={slug}", None, None),
    ("https://dev.convos.org/v2?i={slug}&i=other", None, None),
    ("https://dev.convos.org/v2?i={slug}&i={slug}", None, None),
    # Not Convos, or not an invite.
    ("https://dev.convos.org@evil.example/v2?i={slug}", None, None),
    ("https://evil.example/v2?i={slug}", None, None),
    ("https://www.convos.app/join/{slug}", None, None),
    ("http://dev.convos.org/v2?i={slug}", None, None),
    ("http://convos.app/join/{slug}", None, None),
    ("javascript:alert(1)//{slug}", None, None),
    ("ftp://dev.convos.org/v2?i={slug}", None, None),
    ("dev.convos.org/v2?i={slug}", None, None),
    ("https://dev.convos.org/v3?i={slug}", None, None),
    ("https://dev.convos.org/v2/join?i={slug}", None, None),
    ("https://dev.convos.org/?i={slug}", None, None),
    ("https://convos.app/v2?i={slug}", None, None),
    ("https://convos.app/join/{slug}/more", None, None),
    ("convos://invite/{slug}", None, None),
    ("convos://join/{slug}/more", None, None),
    ("https://[dev.convos.org/v2?i={slug}", None, None),
    ("not an invite {slug}", None, None),
    ("{slug}!", None, None),
    # No slug, or one Convos never makes.
    ("https://dev.convos.org/v2", None, None),
    ("https://dev.convos.org/v2?i=", None, None),
    ("https://dev.convos.org/v2?code={slug}", None, None),
    ("https://convos.app/join/", None, None),
    ("convos://join/", None, None),
    ("***", None, None),
    ("https://dev.convos.org/v2?i=a+b", None, None),
    ("https://dev.convos.org/v2?i=a/b=", None, None),
    ("https://dev.convos.org/v2?i=caf%C3%A9", None, None),
    ("https://dev.convos.org/v2?i=a%0Ab", None, None),
    ("https://dev.convos.org/v2?i=a\tb", None, None),
    # Too long for the protocol (runtime/limits.py), however it is spelled.
    ("x" * (JOIN_URL_MAX + 1), None, None),
    ("x" * (JOIN_URL_MAX - 10), None, None),  # fits as given, not once canonical
    ("https://dev.convos.org/v2?i=" + "x" * 8192, None, None),
]
CASES = [
    pytest.param(link, env, (dev if env == "dev" else production), id=f"{env}-{n}")
    for n, (link, dev, production) in enumerate(LINKS)
    for env in ("dev", "production")
]


def _pool_check(link: str) -> str | None:
    """The pool API's own check (`_join_url`, the serializer's): canonical URL, or None if refused."""
    try:
        return _join_url(link)
    except serializers.ValidationError:
        return None


def _runtime_check(link: str, xmtp_env: str) -> str | None:
    """The runtime's validation of POST /pool/provision: canonical URL, or None if refused."""
    try:
        return validate_provision({"agentName": "A", "instructions": "", "joinUrl": link}, xmtp_env=xmtp_env).join_url
    except ValidationError as exc:
        assert exc.field_name == "joinUrl"
        return None


@pytest.mark.parametrize(("link", "xmtp_env", "canonical"), CASES)
def test_it_pool_and_runtime_agree_on_every_link(settings, link, xmtp_env, canonical):
    settings.XMTP_ENV = xmtp_env
    link = link.format(slug=SLUG)
    expected = canonical.format(slug=SLUG) if canonical else None
    assert (_pool_check(link), _runtime_check(link, xmtp_env)) == (expected, expected)


def test_it_staging_takes_dev_links(settings):
    settings.XMTP_ENV = "staging"
    assert _pool_check(f"convos://join/{SLUG}") == _runtime_check(f"convos://join/{SLUG}", "staging") == DEV.format(slug=SLUG)
    assert _pool_check(PRODUCTION.format(slug=SLUG)) is _runtime_check(PRODUCTION.format(slug=SLUG), "staging") is None


def test_it_says_why_without_echoing_the_link(settings):
    settings.XMTP_ENV = "dev"
    with pytest.raises(serializers.ValidationError) as refused:
        _join_url(PRODUCTION.format(slug=SLUG))
    message = str(refused.value.detail[0])
    assert message == "Invite belongs to the Convos production environment; this pool serves dev"
    with pytest.raises(ValidationError) as at_runtime:
        validate_provision({"agentName": "A", "instructions": "", "joinUrl": f"https://me@dev.convos.org/v2?i={SLUG}"},
                           xmtp_env="dev")
    assert str(at_runtime.value).startswith("joinUrl ") and "user name" in str(at_runtime.value)
    assert SLUG not in message and SLUG not in str(at_runtime.value)


def test_it_an_empty_join_url_is_no_join_at_the_pool_and_refused_by_the_instance(settings):
    # The API has always read a blank joinUrl as "create a conversation"; the pool then sends none.
    settings.XMTP_ENV = "dev"
    assert _join_url("") is None and claim_spec(agent_name="A", join_url="").join_url in ("", None)
    assert _runtime_check("", "dev") is None and _runtime_check("   ", "dev") is None


def test_it_claim_spec_normalises_a_link_that_skips_the_api(settings):
    # The CLI (manage.py claim) and clones reach claim_spec without the API's serializer.
    settings.XMTP_ENV = "production"
    assert claim_spec(agent_name="A", join_url=f"convos://join/{SLUG}").join_url == PRODUCTION.format(slug=SLUG)
    with pytest.raises(Invalid) as refused:
        claim_spec(agent_name="A", join_url=DEV.format(slug=SLUG))
    assert refused.value.field == "joinUrl" and refused.value.status_code == 400


# --- end to end: pool API -> services -> an instance that runs the runtime's validation ---------------


@pytest.fixture
def fake_pool(settings, pool_work_inline):
    """Idle instances of the fake provider, whose instances validate provisions with the runtime's
    own code: a link the pool passed and the instance refused would come back as a 502."""
    settings.INFRA_PROVIDER = "fake"
    settings.FAKE_HEALTH_LATENCY_MS = 0

    def fill(n: int, xmtp_env: str) -> None:
        settings.XMTP_ENV = xmtp_env
        settings.POOL_MIN_IDLE = n
        pool_tick()
        pool_tick()
        assert Instance.objects.filter(status=InstanceStatus.IDLE).count() >= n

    yield fill
    for instance_id in InstanceInfra.objects.using("services").values_list("instance_id", flat=True):
        services.instance_destroy(instance_id=instance_id)


@pytest.mark.django_db(databases=ALL_DATABASES)
@pytest.mark.parametrize("xmtp_env", ["dev", "production"])
def test_it_claims_every_accepted_form_and_refuses_the_rest_with_400(api, fake_pool, xmtp_env):
    column = 1 if xmtp_env == "dev" else 2
    fake_pool(sum(1 for row in LINKS if row[column]), xmtp_env)
    wrong: list[str] = []
    for n, row in enumerate(LINKS):
        slug = f"{SLUG}{n}"  # one invite per link: the same one twice would be a 409 (see below)
        link, canonical = row[0].format(slug=slug), row[column] and row[column].format(slug=slug)
        response = api.post(CLAIM, {"agentName": "Ada", "instructions": "Hi.", "joinUrl": link}, format="json")
        body = response.json()
        if canonical is None:
            if response.status_code != 400 or "joinUrl" not in body["error"]:
                wrong.append(f"{n}: {response.status_code} {body}")
            continue
        instance = Instance.objects.filter(pk=body.get("instanceId")).first()
        seen = (response.status_code, body.get("inviteUrl"), instance and instance.join_url,
                instance and fake_instance(instance.pk).binding["inviteUrl"])
        if seen != (200, canonical, canonical, canonical):
            wrong.append(f"{n}: {seen} {body}")
    assert wrong == []


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_two_spellings_of_one_invite_are_one_join(api, fake_pool):
    fake_pool(2, "dev")
    first = api.post(CLAIM, {"agentName": "Ada", "instructions": "", "joinUrl": SLUG}, format="json")
    assert first.status_code == 200, first.json()
    second = api.post(CLAIM, {"agentName": "Bo", "instructions": "", "joinUrl": f"https://convos.app/join/{SLUG}"},
                      format="json")
    assert second.status_code == 409 and "joinUrl" in second.json()["error"]
