from django.urls import path

from services_app import apis

urlpatterns = [
    path("create-instance", apis.CreateInstanceApi.as_view()),
    path("destroy/<str:instance_id>", apis.DestroyInstanceApi.as_view()),
    path("destroy/<str:instance_id>/<str:tool_id>/<str:resource_id>", apis.DestroyToolApi.as_view()),
    path("status/batch", apis.StatusBatchApi.as_view()),
    path("redeploy/<str:instance_id>", apis.RedeployApi.as_view()),
    path("provision/<str:instance_id>/<str:tool_id>", apis.ProvisionToolApi.as_view()),
    path("configure/<str:instance_id>", apis.ConfigureApi.as_view()),
    path("reset/<str:instance_id>", apis.ResetApi.as_view()),
    path("convos-status/<str:instance_id>", apis.ConvosStatusApi.as_view()),
    path("registry", apis.RegistryApi.as_view()),
    path("check-user-config/<str:tool_id>", apis.CheckUserConfigApi.as_view()),
    path("teardown/retry", apis.TeardownRetryApi.as_view()),
    path("providers", apis.ProviderStatusApi.as_view()),
]
