"""Templates in admin: the changelist with its instance counts, filters and search; the edit form
checks model and tools with the API's validation and saves through the services."""
from __future__ import annotations

import json
import re

import pytest

# Admin URLs carry primary keys quoted ("_" is its escape character: tpl_22... would unquote to tpl"...).
from django.contrib.admin.utils import quote
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pool_app.models import Instance, InstanceStatus
from templates_app.models import AgentTemplate
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)

CHANGELIST = reverse("admin:templates_app_agenttemplate_changelist")
ADD = reverse("admin:templates_app_agenttemplate_add")
TOOLS = [{"id": "email", "provisioning": "pool"}]
MODEL = {"default": "openrouter/model-a", "allow_override": False}


@pytest.fixture
def operator(operator_login):
    return operator_login("ops-alice")


def _template(creator: str, name: str, *, visibility: str = "private", instructions: str = "Help.") -> AgentTemplate:
    return AgentTemplate.objects.using("templates").create(
        creator_id=creator, agent_name=name, instructions=instructions, visibility=visibility, model=MODEL, tools=TOOLS,
    )


def _instances(template: AgentTemplate, count: int, status: str = InstanceStatus.CLAIMED) -> None:
    for _ in range(count):
        Instance.objects.using("pool").create(status=status, agent_name=template.agent_name, template_id=template.pk)


def _rows(response) -> set[str]:
    """Template ids listed in the changelist's result table."""
    return set(re.findall(r'name="_selected_action" value="(tpl_[0-9a-f]+)"', response.content.decode()))


def _why(response) -> str:
    from django.contrib.messages import get_messages

    return f"{response.status_code} {response.get('Location')} {[m.message for m in get_messages(response.wsgi_request)]}"


def _form(template: AgentTemplate | None = None, **changes) -> dict:
    values = {
        "agent_name": template.agent_name if template else "Concierge",
        "visibility": template.visibility if template else "private",
        "instructions": template.instructions if template else "Book things.",
        "model": json.dumps(template.model if template else MODEL),
        "tools": json.dumps(template.tools if template else TOOLS),
        "_save": "Save",
    }
    return {**values, **changes}


def test_it_shows_live_instance_counts_asking_the_pool_once_per_page(operator):
    busy, quiet, other = _template("alice", "Busy"), _template("alice", "Quiet"), _template("bob", "Other", visibility="public")
    _instances(busy, 2)
    _instances(busy, 1, InstanceStatus.DELETED)  # gone: not counted
    _instances(other, 1, InstanceStatus.PENDING_ACCEPTANCE)

    with CaptureQueriesContext(connections["pool"]) as pool_queries:
        response = operator.get(CHANGELIST)
    assert response.status_code == 200
    on_instances = [q["sql"] for q in pool_queries if '"instances"' in q["sql"]]
    assert len(on_instances) == 1, on_instances  # one count query for the page, not one per row
    html = response.content.decode()
    assert _rows(response) == {busy.pk, quiet.pk, other.pk}
    pool_changelist = reverse("admin:pool_app_instance_changelist")
    assert f'<a href="{pool_changelist}?template_id={busy.pk}">2</a>' in html
    assert f'<a href="{pool_changelist}?template_id={quiet.pk}">0</a>' in html
    assert f'<a href="{pool_changelist}?template_id={other.pk}">1</a>' in html
    assert operator.get(f"{pool_changelist}?template_id={busy.pk}").status_code == 200  # the link works


def test_it_filters_by_visibility_and_creator_and_searches(operator):
    alice_private = _template("alice", "Alpha", instructions="Plan trips to Lisbon.")
    alice_public = _template("alice", "Beta", visibility="public")
    bob_public = _template("bob", "Gamma", visibility="public")
    nobody = _template("", "Delta")

    response = operator.get(CHANGELIST)
    html = response.content.decode()
    for creator in ("alice", "bob"):
        assert f'?creator={creator}"' in html  # the creator filter lists each distinct creator
    assert "(none)" in html

    assert _rows(operator.get(CHANGELIST + "?visibility__exact=public")) == {alice_public.pk, bob_public.pk}
    assert _rows(operator.get(CHANGELIST + "?creator=alice")) == {alice_private.pk, alice_public.pk}
    assert _rows(operator.get(CHANGELIST + "?creator=bob&visibility__exact=private")) == set()
    assert _rows(operator.get(CHANGELIST + "?creator=__none__")) == {nobody.pk}
    assert _rows(operator.get(CHANGELIST + "?q=lisbon")) == {alice_private.pk}  # instructions
    assert _rows(operator.get(CHANGELIST + "?q=Gamma")) == {bob_public.pk}  # agent name
    assert _rows(operator.get(CHANGELIST + f"?q={alice_public.pk}")) == {alice_public.pk}  # id
    assert _rows(operator.get(CHANGELIST + "?q=bob")) == {bob_public.pk}  # creator


@pytest.mark.parametrize("tools,message", [
    ('[{"id": "teleport", "provisioning": "pool"}]', "tools[0].id: unknown tool &#x27;teleport&#x27;"),
    ('[{"id": "email", "provisioning": "always"}]', "tools[0].provisioning: must be &#x27;pool&#x27; or &#x27;user&#x27;"),
    ('{"id": "email"}', "tools: must be a list"),
    ('[{"id": "email"', "Enter a valid JSON."),
])
def test_it_refuses_bad_tools_in_the_edit_form(operator, tools, message):
    template = _template("alice", "Concierge")
    url = reverse("admin:templates_app_agenttemplate_change", args=[quote(template.pk)])
    response = operator.post(url, _form(template, tools=tools))
    assert response.status_code == 200, _why(response)  # the form again, with its error
    assert message in response.content.decode()
    assert response.context["adminform"].form.errors["tools"]
    assert AgentTemplate.objects.using("templates").get(pk=template.pk).tools == TOOLS


def test_it_refuses_a_bad_model_in_the_edit_form(operator):
    template = _template("alice", "Concierge")
    url = reverse("admin:templates_app_agenttemplate_change", args=[quote(template.pk)])
    response = operator.post(url, _form(template, model='{"default": "a", "allow_override": "yes", "extra": 1}'))
    assert response.status_code == 200, _why(response)
    errors = response.context["adminform"].form.errors["model"]
    assert "allow_override must be true or false" in errors and any("'extra'" in e for e in errors)
    assert AgentTemplate.objects.using("templates").get(pk=template.pk).model == MODEL


def test_it_saves_edits_and_additions_through_the_services(operator):
    template = _template("alice", "Concierge")
    url = reverse("admin:templates_app_agenttemplate_change", args=[quote(template.pk)])
    tools = [{"id": "email", "provisioning": "pool"}, {"id": "sms", "provisioning": "user"}]
    response = operator.post(url, _form(template, agent_name="Butler", tools=json.dumps(tools), visibility="public"))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    saved = AgentTemplate.objects.using("templates").get(pk=template.pk)
    assert (saved.agent_name, saved.tools, saved.visibility, saved.creator_id) == ("Butler", tools, "public", "alice")
    assert saved.updated_at > template.updated_at

    response = operator.post(ADD, _form(creator_id="carol"))
    assert response.status_code == 302
    added = AgentTemplate.objects.using("templates").get(agent_name="Concierge", creator_id="carol")
    assert added.pk.startswith("tpl_") and added.tools == TOOLS
    response = operator.post(ADD, _form(agent_name="Ops own"))
    assert response.status_code == 302
    assert AgentTemplate.objects.using("templates").get(agent_name="Ops own").creator_id == "operator"


def test_it_deletes_from_admin_without_touching_instances(operator):
    template = _template("alice", "Concierge")
    _instances(template, 1)
    url = reverse("admin:templates_app_agenttemplate_delete", args=[quote(template.pk)])
    assert operator.post(url, {"post": "yes"}).status_code == 302
    assert not AgentTemplate.objects.using("templates").filter(pk=template.pk).exists()
    assert Instance.objects.using("pool").filter(template_id=template.pk, status=InstanceStatus.CLAIMED).count() == 1


def test_it_lists_shows_and_deletes_templates_from_the_command_line():
    from io import StringIO

    from django.core.management import CommandError, call_command

    template = _template("alice", "Concierge")
    _instances(template, 2)
    out = StringIO()
    call_command("templates", "list", "--creator", "alice", stdout=out)
    assert f"{template.pk}\tprivate\talice\t2 instance(s)\temail:pool\tConcierge" in out.getvalue()

    call_command("templates", "visibility", template.pk, "public", stdout=StringIO())
    assert AgentTemplate.objects.using("templates").get(pk=template.pk).visibility == "public"

    out = StringIO()
    call_command("templates", "delete", template.pk, "--dry-run", stdout=out)
    assert "Dry run" in out.getvalue() and AgentTemplate.objects.using("templates").filter(pk=template.pk).exists()
    call_command("templates", "delete", template.pk, stdout=StringIO())
    assert not AgentTemplate.objects.using("templates").filter(pk=template.pk).exists()
    assert Instance.objects.using("pool").filter(template_id=template.pk).count() == 2
    with pytest.raises(CommandError, match="No template"):
        call_command("templates", "delete", template.pk, stdout=StringIO())
