"""Public reads: what the production Convos pool serves without a key, for drop-in compatibility.

Production's landing page polls `GET /api/pool/counts` and deploy checks read `GET /version`, both
without credentials; `GET /api/pool/info` tells a client which deployment and runtimes it talks to.
None of them says anything about a particular instance or owner, so none needs a key, and none is
throttled (the client throttle keys on an API client, which an anonymous caller is not).
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convos.schema import errors, obj
from pool_app import selectors

logger = logging.getLogger(__name__)


def _environment() -> str:
    # Production's POOL_ENVIRONMENT names the Convos network the pool serves (its clients compare it
    # with "production" to refuse invite links of the other network): here that is XMTP_ENV, not
    # CONVOS_ENV (which only says whether secrets are generated, and is "production" on staging too).
    return settings.XMTP_ENV


class _PublicApi(APIView):
    # No authentication at all: a wrong or stale Authorization header sent by a browser must not
    # turn a public read into a 401.
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class PoolCountsApi(_PublicApi):
    """`{status: count}` over the live instances, every status present; flat, as production answers
    it (its page reads `idle`, `starting`, `claimed`, `crashed` at the top level)."""

    @extend_schema(summary="`{status: count}` over the live instances (no auth).",
                   responses={200: {"type": "object", "additionalProperties": {"type": "integer"}}, **errors(503)})
    def get(self, request: Request) -> Response:
        try:
            counts = selectors.pool_counts()  # one GROUP BY on status
        except DatabaseError:
            # A page polling this while the database is away gets a clean "try later", not a 500.
            logger.warning("pool counts unavailable", exc_info=True)
            return Response({"error": "Pool counts are unavailable right now", "code": "unavailable"}, status=503)
        return Response(counts)


class PoolInfoApi(_PublicApi):
    """Which deployment this is: settings only, no database."""

    @extend_schema(summary="Which deployment this is (no auth).",
                   responses={200: obj("PoolInfo", environment=serializers.CharField(), branch=serializers.CharField(),
                                       railwayServiceId=serializers.CharField(), runtimeTypes=serializers.ListField(child=serializers.CharField()),
                                       version=serializers.CharField())})
    def get(self, request: Request) -> Response:
        return Response({
            "environment": _environment(),
            "branch": settings.POOL_GIT_BRANCH,
            "railwayServiceId": settings.POOL_RAILWAY_SERVICE_ID,
            "runtimeTypes": [settings.POOL_RUNTIME_KIND],
            "version": settings.POOL_VERSION,
        })


class VersionApi(_PublicApi):
    """What code is deployed, as production's `GET /version` answers it."""

    @extend_schema(summary="What code is deployed (no auth).",
                   responses={200: obj("Version", version=serializers.CharField(), environment=serializers.CharField())})
    def get(self, request: Request) -> Response:
        return Response({"version": settings.POOL_VERSION, "environment": _environment()})
