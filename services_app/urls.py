from django.urls import path

from services_app import apis

urlpatterns = [
    path("create-instance", apis.CreateInstanceApi.as_view()),
    path("destroy/<id:instance_id>", apis.DestroyInstanceApi.as_view()),
    path("destroy/<id:instance_id>/<id:tool_id>/<resource:resource_id>", apis.DestroyToolApi.as_view()),
    path("status/batch", apis.StatusBatchApi.as_view()),
    path("redeploy/<id:instance_id>", apis.RedeployApi.as_view()),
    path("provision/<id:instance_id>/<id:tool_id>", apis.ProvisionToolApi.as_view()),
    path("configure/<id:instance_id>", apis.ConfigureApi.as_view()),
    path("abandon-creation/<id:instance_id>", apis.AbandonCreationApi.as_view()),
    path("reset/<id:instance_id>", apis.ResetApi.as_view()),
    path("convos-status/batch", apis.ConvosStatusBatchApi.as_view()),
    path("convos-status/<id:instance_id>", apis.ConvosStatusApi.as_view()),
    path("chat/<id:instance_id>", apis.ChatApi.as_view()),
    path("registry", apis.RegistryApi.as_view()),
    path("instance-for-token", apis.InstanceForTokenApi.as_view()),
    path("check-user-config/<id:tool_id>", apis.CheckUserConfigApi.as_view()),
    path("teardown/retry", apis.TeardownRetryApi.as_view()),
    path("providers", apis.ProviderStatusApi.as_view()),
    path("orphans/sweep", apis.OrphanSweepApi.as_view()),
    path("instances/<id:instance_id>", apis.InstanceInfoApi.as_view()),
]
