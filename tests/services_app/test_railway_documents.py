"""Every GraphQL document the Railway provider sends is valid against Railway's published schema."""
from __future__ import annotations

import pytest
from graphql import parse, validate

from services_app.providers import railway_documents
from services_app.providers.railway_documents import ALL_DOCUMENTS
from tests.services_app.fake_railway import railway_schema


def _name(document: str) -> str:
    return parse(document).definitions[0].name.value


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=_name)
def test_it_validates_every_document_against_the_schema(document):
    errors = validate(railway_schema(), parse(document))
    assert errors == []


def test_it_lists_every_document_constant_and_names_each_operation():
    constants = {v for k, v in vars(railway_documents).items() if k.isupper() and isinstance(v, str)}
    assert constants == set(ALL_DOCUMENTS)
    names = [_name(d) for d in ALL_DOCUMENTS]
    assert all(names) and len(set(names)) == len(names)


@pytest.mark.parametrize(
    "broken",
    [
        # a field Volume does not have
        "mutation VolumeCreate($input: VolumeCreateInput!) { volumeCreate(input: $input) { id mountPath } }",
        # an argument serviceInstanceDeployV2 does not take
        "mutation Deploy($serviceId: String!) { serviceInstanceDeployV2(serviceId: $serviceId, image: \"x\") }",
        # a wrong input type for projectCreate
        "mutation ProjectCreate($input: ServiceCreateInput!) { projectCreate(input: $input) { id } }",
    ],
)
def test_it_would_catch_a_document_the_schema_rejects(broken):
    assert validate(railway_schema(), parse(broken)) != []


def test_it_rejects_variables_the_schema_does_not_accept():
    """The fake Railway coerces variables against the declared input types, as Railway does."""
    import requests
    import responses

    from services_app.providers.railway_documents import VOLUME_CREATE
    from tests.services_app.fake_railway import FakeRailway

    api = "https://railway.test/graphql/v2"
    with responses.RequestsMock() as rsps:
        fake = FakeRailway(api).install(rsps)
        answer = requests.post(
            api,
            json={"query": VOLUME_CREATE, "variables": {"input": {"projectId": "p", "mountpath": "/data"}}},
            headers={"Authorization": "Bearer t"},
            timeout=5,
        )
    assert answer.status_code == 400 and "mountpath" in answer.json()["errors"][0]["message"]
    assert not fake.calls


@pytest.mark.parametrize("count", [1, 50])
def test_it_validates_the_aliased_project_states_document(count):
    document = railway_documents.project_states_document(count)
    assert validate(railway_schema(), parse(document)) == []
    (operation,) = [d for d in parse(document).definitions if d.kind == "operation_definition"]
    aliases = [field.alias.value for field in operation.selection_set.selections]
    assert aliases == [railway_documents.project_alias(i) for i in range(count)]
    assert {field.name.value for field in operation.selection_set.selections} == {"project"}
