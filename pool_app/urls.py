from django.urls import path

from pool_app import apis, public_apis

urlpatterns = [
    path("claim", apis.PoolClaimApi.as_view(), name="pool-claim"),
    path("pending-acceptance/complete", apis.PendingAcceptanceCompleteApi.as_view(), name="pending-acceptance-complete"),
    path("pending-acceptance/fail", apis.PendingAcceptanceFailApi.as_view(), name="pending-acceptance-fail"),
    path("status", apis.PoolStatusApi.as_view(), name="pool-status"),
    path("counts", public_apis.PoolCountsApi.as_view(), name="pool-counts"),
    path("info", public_apis.PoolInfoApi.as_view(), name="pool-info"),
    path("replenish", apis.PoolReplenishApi.as_view(), name="pool-replenish"),
    path("drain", apis.PoolDrainApi.as_view(), name="pool-drain"),
    path("redeploy", apis.PoolRedeployApi.as_view(), name="pool-redeploy"),
    path("instances", apis.InstancesApi.as_view(), name="instances"),
    path("instances/<id:instance_id>", apis.InstanceDestroyApi.as_view(), name="instance-destroy"),
    path("instances/<id:instance_id>/redeploy", apis.InstanceRedeployApi.as_view(), name="instance-redeploy"),
    path("instances/<id:instance_id>/recheck", apis.InstanceRecheckApi.as_view(), name="instance-recheck"),
    path("instances/<id:instance_id>/clone", apis.InstanceCloneApi.as_view(), name="instance-clone"),
]
