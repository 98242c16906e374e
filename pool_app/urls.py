from django.urls import path

from pool_app import apis

urlpatterns = [
    path("claim", apis.PoolClaimApi.as_view(), name="pool-claim"),
    path("status", apis.PoolStatusApi.as_view(), name="pool-status"),
]
