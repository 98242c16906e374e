"""The OpenAPI 3 schema (drf-spectacular): it validates, names every API route, documents the one
error shape, is served with a UI whose assets are local, and the live API keeps to it when
schemathesis fuzzes every operation from it (no 5xx, every answer as documented)."""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest
import requests
from django.conf import settings as django_settings
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from pool_app.models import Instance, InstanceStatus
from pool_app.services import pool_tick
from tests.conftest import ALL_DATABASES

MAX_EXAMPLES = 5  # per operation and generation mode: the fuzz stays a few hundred requests
# The 5xx the API answers by design, each documented with the error shape: no idle instance or a
# provider not configured (503), an upstream failure (502). Any other 5xx fails the fuzz.
DESIGNED_5XX = {502, 503}


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _route_paths() -> set[str]:
    """Every URL route under /api/ and /services/, plus /version and /healthz, in OpenAPI's spelling."""
    found: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern):
                found.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns, "")
    api = {p for p in found if p.startswith(("/api/", "/services/")) or p in ("/version", "/healthz")}
    return api - {"/api/schema/", "/api/docs/"}


def test_it_generates_a_valid_openapi_3_schema():
    schema = _schema()
    validate_schema(schema)  # drf-spectacular's OpenAPI 3 JSON-schema check; raises on any violation
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Convos agent pool"
    assert schema["info"]["version"] == django_settings.POOL_VERSION


def test_it_lists_every_api_route():
    routes, documented = _route_paths(), set(_schema()["paths"])
    assert len(routes) > 40
    assert routes - documented == set(), "routes missing from the schema"
    assert documented - routes == set(), "schema paths with no route"


def test_it_documents_the_error_shape_and_the_main_bodies():
    schema = _schema()
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "code"} and set(error["properties"]) == {"error", "code", "fields"}
    ref = {"$ref": "#/components/schemas/Error"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/healthz":
                    assert response["content"]["application/json"]["schema"] == ref, (method, path, status)
            if operation.get("security") != [{}] and path not in ("/version", "/healthz") and "security" in operation:
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
    claim = schema["paths"]["/api/pool/claim"]["post"]
    assert claim["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PoolClaimInputRequest"}
    assert claim["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ClaimOutput"}
    assert {"400", "401", "403", "404", "409", "503"} <= set(claim["responses"])
    detail = schema["paths"]["/api/pool/instances/{instance_id}"]["get"]
    assert detail["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InstanceOutput"}
    listing = schema["paths"]["/api/pool/instances"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    page = schema["components"]["schemas"][listing["$ref"].rsplit("/", 1)[1]]
    assert page["properties"]["instances"]["items"] == {"$ref": "#/components/schemas/InstanceOutput"}


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_it_serves_the_schema_and_a_ui_without_a_cdn(client):
    as_json = client.get("/api/schema/?format=json")
    assert as_json.status_code == 200 and as_json.json()["info"]["title"] == "Convos agent pool"
    as_yaml = client.get("/api/schema/")
    assert as_yaml.status_code == 200 and as_yaml.content.startswith(b"openapi: 3.")
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in a for a in assets), assets
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))], "an asset from outside the app"
    for asset in assets:
        if "drf_spectacular_sidecar" in asset:
            answer = client.get(asset)
            assert answer.status_code == 200, asset
            b"".join(answer.streaming_content if answer.streaming else [answer.content])


@pytest.fixture
def fake_infra(settings, pool_work_inline):
    settings.INFRA_PROVIDER = "fake"  # in-memory instances: no process is ever spawned
    settings.FAKE_HEALTH_LATENCY_MS = 0
    settings.POOL_MIN_IDLE = 0
    settings.CLAIM_TIMEOUT_MS = 5_000  # a claim with no idle instance gives up quickly
    # A few idle instances, so that some generated claims succeed and their answers are checked too.
    settings.POOL_MIN_IDLE = 4
    pool_tick()
    pool_tick()
    settings.POOL_MIN_IDLE = 0
    assert Instance.objects.filter(status=InstanceStatus.IDLE).count() == 4


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_it_fuzzes_the_live_api_from_its_schema(fake_infra, live_server, capsys):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema = schemathesis.openapi.from_dict(_schema())
    statuses: Counter[int] = Counter()
    by_operation: dict[str, Counter[int]] = defaultdict(Counter)
    failures: list[str] = []
    operations = 0
    session = requests.Session()

    # First the reads of one existing object, with real ids, so that their 200 bodies are checked too.
    template = session.post(f"{live_server.url}/api/templates", json={"agentName": "Fuzzed", "instructions": "Be brief."},
                            headers={"Authorization": f"Bearer {django_settings.POOL_API_KEY}"}, timeout=30)
    assert template.status_code == 201, template.text
    real_ids = {"instance_id": Instance.objects.filter(status=InstanceStatus.IDLE).first().pk, "template_id": template.json()["id"]}
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        if operation.method.upper() != "GET" or not names or not names <= set(real_ids) or operation.path.startswith("/services/"):
            continue

        @hypothesis_settings(max_examples=2, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(path_parameters={n: real_ids[n] for n in names}))
        def read(case) -> None:
            response = case.call(base_url=live_server.url, headers={"Authorization": f"Bearer {django_settings.POOL_API_KEY}"},
                                 session=session, timeout=30)
            statuses[response.status_code] += 1
            by_operation[f"{operation.method.upper()} {operation.path} (real id)"][response.status_code] += 1
            assert response.status_code == 200, response.text
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        read()

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        key = django_settings.SERVICES_API_KEY if operation.path.startswith(("/services/", "/api/proxy/")) else django_settings.POOL_API_KEY
        headers = {"Authorization": f"Bearer {key}"}
        documented = {int(code) for code in operation.definition.raw["responses"] if code.isdigit()}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                response = case.call(base_url=live_server.url, headers=headers, session=session, timeout=30)
                statuses[response.status_code] += 1
                by_operation[f"{operation.method.upper()} {operation.path}"][response.status_code] += 1
                designed = response.status_code in DESIGNED_5XX & documented
                checks = [response_schema_conformance] if designed else [not_a_server_error, response_schema_conformance]
                case.validate_response(response, checks=checks, headers=headers)

            try:
                run()
            except Unsatisfiable:  # no input to break (an operation without parameters or body): nothing negative to send
                continue
            except BaseException as exc:  # noqa: BLE001 - a FailureGroup is a BaseExceptionGroup; collect every operation's failure, then fail once with all of them
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {str(exc)[:1500]}")

    with capsys.disabled():
        print(f"\nschemathesis: {operations} operations, {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}, "
              f"{len(failures)} failing")
        for name, counts in by_operation.items():
            print(f"  {name}: {dict(sorted(counts.items()))}")
    assert operations == len(_schema_operations())
    assert not failures, "\n\n".join(failures)
    assert not [s for s in statuses if s >= 500 and s not in DESIGNED_5XX]


def _schema_operations() -> list[tuple[str, str]]:
    return [(p, m) for p, item in _schema()["paths"].items() for m in item]
