"""REST endpoints of the pool. Thin: validate, call one service, serialize."""
from __future__ import annotations

import time

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convos.serializer_fields import StrictCharField
from pool_app import selectors
from pool_app.invite_urls import join_url_problem
from pool_app.models import Actor
from pool_app.services import instance_claim

MAX_AGENT_NAME = 200
MAX_INSTRUCTIONS = 100_000  # what the runtime accepts


class InstanceOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    deployStatus = serializers.CharField(source="deploy_status")
    url = serializers.CharField()
    agentName = serializers.CharField(source="agent_name")
    conversationId = serializers.CharField(source="conversation_id")
    inviteUrl = serializers.CharField(source="invite_url")
    templateId = serializers.CharField(source="template_id")
    ownerId = serializers.CharField(source="owner_id")
    protected = serializers.BooleanField()
    lastError = serializers.CharField(source="last_error")
    createdAt = serializers.DateTimeField(source="created_at")
    statusChangedAt = serializers.DateTimeField(source="status_changed_at")
    claimedAt = serializers.DateTimeField(source="claimed_at")


class PoolClaimApi(APIView):
    class InputSerializer(serializers.Serializer):
        agentName = StrictCharField(max_length=MAX_AGENT_NAME, trim_whitespace=True)
        instructions = StrictCharField(max_length=MAX_INSTRUCTIONS, allow_blank=True, trim_whitespace=False)
        joinUrl = StrictCharField(max_length=500, required=False, allow_null=True, allow_blank=True)

        def validate_joinUrl(self, value: str | None) -> str | None:
            if value:
                problem = join_url_problem(value, xmtp_env=settings.XMTP_ENV)
                if problem:
                    raise serializers.ValidationError(problem)
            return value or None

    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        if not isinstance(request.data, dict):
            raise serializers.ValidationError({"body": "Must be a JSON object"})
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = instance_claim(
            agent_name=data.validated_data["agentName"],
            instructions=data.validated_data["instructions"],
            join_url=data.validated_data.get("joinUrl"),
            owner_id=request.user.owner_id or "",
            actor=Actor.API,
        )
        response = Response(result.as_dict())
        total_ms = (time.perf_counter() - started) * 1000
        # Lets clients and benchmarks split the claim into the instance's provisioning and the pool's own work.
        response["Server-Timing"] = f"provision;dur={result.provision_ms:.1f}, pool;dur={total_ms - result.provision_ms:.1f}"
        return response


class PoolStatusApi(APIView):
    def get(self, request: Request) -> Response:
        status = selectors.pool_status()
        return Response({
            "counts": status["counts"],
            "instances": InstanceOutputSerializer(status["instances"], many=True).data,
        })
