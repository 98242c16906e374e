"""Services' admin shows the record of paid resources and never deletes it (finding 14.7)."""
import pytest

from services_app.models import InstanceInfra, InstanceService, ResourceStatus
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def test_it_no_services_row_can_be_deleted_from_admin(admin_client):
    infra = InstanceInfra.objects.create(instance_id="rec000000001", provider="fake", secret_nonce="n", instance_services_token_hash="h")
    resource = InstanceService.objects.create(instance=infra, tool_id="email", resource_id="inbox@mail.test", status=ResourceStatus.ACTIVE)
    for url in (f"/admin/services_app/instanceinfra/{infra.pk}/delete/", f"/admin/services_app/instanceservice/{resource.pk}/delete/"):
        assert admin_client.post(url, {"post": "yes"}).status_code == 403
    changelist = admin_client.get("/admin/services_app/instanceinfra/").content.decode()
    assert 'value="delete_selected"' not in changelist
    admin_client.post("/admin/services_app/instanceinfra/", {"action": "delete_selected", "_selected_action": [infra.pk], "post": "yes"})
    assert InstanceInfra.objects.filter(pk=infra.pk).exists() and InstanceService.objects.filter(pk=resource.pk).exists()
