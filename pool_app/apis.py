"""REST endpoints of the pool. Thin: validate, call one service, serialize."""
from __future__ import annotations

import time

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convos.permissions import IsOperator
from convos.schema import OK_INSTANCE, PAGE_PARAMETERS, errors, obj
from convos.serializer_fields import StrictBooleanField, StrictCharField
from convos.pagination import page
from convos.parsers import json_object_body
from runtime import limits
from pool_app import selectors
from pool_app.invite_urls import InvalidInvite, normalize_join_url
from pool_app.auth import InstanceTokenAuthentication
from pool_app.models import Actor, InstanceStatus, RuntimeKind
from pool_app.qr import qr_data_url
from pool_app.services import instance_claim
from pool_app.services.claim import claim_spec
from pool_app.services.templates import instance_clone
from pool_app.services import operations

MAX_IDEMPOTENCY_KEY = 200


class InstanceOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    deployStatus = serializers.CharField(source="deploy_status")
    url = serializers.CharField()
    agentName = serializers.CharField(source="agent_name")
    conversationId = serializers.CharField(source="conversation_id")
    inviteUrl = serializers.CharField(source="invite_url")
    joinUrl = serializers.CharField(source="join_url")
    templateId = serializers.CharField(source="template_id")
    model = serializers.CharField()
    runtimeKind = serializers.CharField(source="runtime_kind")
    source = serializers.CharField()
    ownerId = serializers.CharField(source="owner_id")
    protected = serializers.BooleanField()
    lastError = serializers.CharField(source="last_error")
    createdAt = serializers.DateTimeField(source="created_at")
    statusChangedAt = serializers.DateTimeField(source="status_changed_at")
    claimedAt = serializers.DateTimeField(source="claimed_at", allow_null=True)


def _join_url(value: str | None) -> str | None:
    """The canonical form of a joinUrl the pool's instances can join, or None. Canonical, so that the
    duplicate-join check and the instance see one spelling of one invite; a bad link is a 400 here,
    not a 502 from the instance after an instance was taken."""
    if not value:
        return None
    try:
        return normalize_join_url(value, xmtp_env=settings.XMTP_ENV)
    except InvalidInvite as exc:
        raise serializers.ValidationError(str(exc)) from None


class ClaimOutputSerializer(serializers.Serializer):
    """A claim's answer as the API renders it; `qrDataUrl` is drawn here from the invite URL only
    when the claim asked for it (`?qr=true`, context `draw_qr=True`); otherwise it is null (the key
    stays, for clients that read it). Drawing it was most of a claim's own CPU."""

    QR_PARAMETER = OpenApiParameter(
        "qr", bool, description="true/false/1/0 (default false): also answer the invite as a QR code PNG "
        "data URL in `qrDataUrl` (null otherwise). Anything else is a 400.")

    @staticmethod
    def draw_qr(request: Request) -> bool:
        """`?qr=`: true/false/1/0, absent is false; anything else is a 400 naming `qr`."""
        value = request.query_params.get("qr", "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise serializers.ValidationError({"qr": "Must be true or false"})
        return value in ("true", "1")

    instanceId = serializers.CharField(source="instance_id")
    agentName = serializers.CharField(source="agent_name")
    inviteUrl = serializers.CharField(source="invite_url", allow_null=True)
    conversationId = serializers.CharField(source="conversation_id", allow_null=True)
    joined = serializers.BooleanField()
    status = serializers.CharField()
    qrDataUrl = serializers.SerializerMethodField()

    def get_qrDataUrl(self, result) -> str | None:  # noqa: N802 - the API's field name
        if not self.context.get("draw_qr") or not result.invite_url:
            return None
        return qr_data_url(result.invite_url)


_OPERATION = obj("PoolOperationResult", dryRun=serializers.BooleanField(required=False))


class PoolClaimApi(APIView):
    class InputSerializer(serializers.Serializer):
        # Both optional as in production (defaults "Assistant" and "You are a helpful AI
        # assistant."); with a template they override the template's.
        agentName = StrictCharField(max_length=limits.AGENT_NAME_MAX, trim_whitespace=True, required=False, allow_blank=True)
        instructions = StrictCharField(max_length=limits.INSTRUCTIONS_MAX, allow_blank=True, trim_whitespace=False, required=False)
        joinUrl = StrictCharField(max_length=limits.JOIN_URL_MAX, required=False, allow_null=True, allow_blank=True)
        templateId = StrictCharField(max_length=64, required=False, allow_null=True, allow_blank=True)
        model = StrictCharField(max_length=limits.MODEL_NAME_MAX, required=False, allow_null=True, allow_blank=True)
        userConfig = serializers.DictField(required=False, allow_null=True)
        # Production's claim fields: the image and metadata go to the agent's Convos profile,
        # `source` is recorded, `runtime` picks the kind of instance.
        profileImage = serializers.URLField(max_length=limits.PROFILE_IMAGE_MAX, required=False, allow_null=True, allow_blank=True)
        metadata = serializers.DictField(child=StrictCharField(max_length=limits.METADATA_VALUE_MAX, allow_blank=True, trim_whitespace=False),
                                         required=False, allow_null=True)
        source = StrictCharField(max_length=limits.SOURCE_MAX, required=False, allow_null=True, allow_blank=True)
        runtime = serializers.ChoiceField(choices=RuntimeKind.values, required=False, allow_null=True)

        def validate_metadata(self, value: dict | None) -> dict | None:
            if value and len(value) > limits.METADATA_KEYS_MAX:
                raise serializers.ValidationError(f"At most {limits.METADATA_KEYS_MAX} keys")
            for key in value or {}:
                if not key or len(key) > limits.METADATA_KEY_MAX:
                    raise serializers.ValidationError(f"Keys are 1 to {limits.METADATA_KEY_MAX} characters")
            return value

        def validate_joinUrl(self, value: str | None) -> str | None:
            return _join_url(value)

    @extend_schema(
        summary="Claim an idle instance and set it up as an agent (optionally joining a conversation).",
        request=InputSerializer, responses={200: ClaimOutputSerializer, **errors(400, 401, 403, 404, 409, 429, 502, 503)},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, description="At most 200 characters: "
                                     "a retried claim with the same key replays the first answer (header `Idempotent-Replayed: true`)."),
                    ClaimOutputSerializer.QR_PARAMETER],
    )
    def post(self, request: Request) -> Response:
        started = time.perf_counter()
        draw_qr = ClaimOutputSerializer.draw_qr(request)  # a bad ?qr= is refused before any instance is taken
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        key = request.META.get("HTTP_IDEMPOTENCY_KEY", "").strip()
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise serializers.ValidationError({"Idempotency-Key": f"At most {MAX_IDEMPOTENCY_KEY} characters"})
        v = data.validated_data
        # Template, model and user credentials are checked before any instance is taken.
        spec = claim_spec(
            viewer=request.user, template_id=v.get("templateId") or None, agent_name=v.get("agentName"),
            instructions=v.get("instructions"), model=v.get("model") or None, join_url=v.get("joinUrl"),
            user_config=v.get("userConfig"), owner_id=request.user.owner_id or "",
            profile_image=v.get("profileImage") or None, metadata=v.get("metadata"), source=v.get("source") or "",
            runtime=v.get("runtime") or None,
        )
        result = instance_claim(spec=spec, actor=Actor.API, idempotency_key=key or None, owner_key=request.user.name)
        response = Response(ClaimOutputSerializer(result, context={"draw_qr": draw_qr}).data)
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        else:
            # Lets clients and benchmarks split the claim into the instance's provisioning and the pool's own work.
            pool_ms = (time.perf_counter() - started) * 1000 - result.provision_ms
            response["Server-Timing"] = f"provision;dur={result.provision_ms:.1f}, pool;dur={pool_ms:.1f}"
        return response


class PoolStatusApi(APIView):
    @extend_schema(summary="The pool's counts and instances (an API client: its own; the operator also sees the tick, settings, providers).",
                   responses={200: obj("PoolStatus", counts=serializers.DictField(child=serializers.IntegerField()),
                                       outage=serializers.JSONField(allow_null=True),
                                       instances=InstanceOutputSerializer(many=True),
                                       lastTick=serializers.JSONField(required=False, allow_null=True),
                                       settings=serializers.JSONField(required=False), providers=serializers.JSONField(required=False)),
                              **errors(401, 403, 429)})
    def get(self, request: Request) -> Response:
        # What a client may see of the pool is the selector's rule (see pool_status).
        status = selectors.pool_status(owner_id=None if request.user.is_operator else request.user.owner_id)
        answer = {"counts": status["counts"], "outage": status["outage"],
                  "instances": InstanceOutputSerializer(status["instances"], many=True).data}
        if "last_tick" in status:
            answer.update(lastTick=status["last_tick"], settings=status["settings"], providers=status["providers"])
        return Response(answer)


class _CountSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=1, max_value=operations.MAX_PER_REQUEST)


class _DryRunSerializer(serializers.Serializer):
    dryRun = StrictBooleanField(required=False, default=False)


class PoolReplenishApi(APIView):
    permission_classes = [IsOperator]

    @extend_schema(summary="Start creating `count` more instances (operator only).", request=_CountSerializer,
                   responses={200: _OPERATION, **errors(400, 401, 403, 409, 429, 503)})
    def post(self, request: Request) -> Response:
        data = _CountSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        return Response(operations.pool_replenish(count=data.validated_data["count"], actor=Actor.API).as_dict())


class PoolDrainApi(APIView):
    permission_classes = [IsOperator]

    class InputSerializer(_CountSerializer, _DryRunSerializer):
        pass

    @extend_schema(summary="Destroy up to `count` idle instances (operator only; `dryRun` only lists them).",
                   request=InputSerializer, responses={200: _OPERATION, **errors(400, 401, 403, 409, 429)})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        return Response(operations.pool_drain(count=data.validated_data["count"], dry_run=data.validated_data["dryRun"], actor=Actor.API).as_dict())


class PoolRedeployApi(APIView):
    permission_classes = [IsOperator]

    @extend_schema(summary="Redeploy the idle instances on the current image (operator only).", request=_DryRunSerializer,
                   responses={200: _OPERATION, **errors(400, 401, 403, 409, 429)})
    def post(self, request: Request) -> Response:
        data = _DryRunSerializer(data=json_object_body(request, optional=True))
        data.is_valid(raise_exception=True)
        return Response(operations.pool_redeploy_idle(dry_run=data.validated_data["dryRun"], actor=Actor.API).as_dict())


class InstancesApi(APIView):
    """GET: the instances the caller may see (an API client: its own), a page at a time, `?status=`."""

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=InstanceStatus.values, required=False)

    @extend_schema(operation_id="api_pool_instances_list", summary="The instances the caller may see, a page at a time.",
                   parameters=[FilterSerializer, *PAGE_PARAMETERS],
                   responses={200: obj("InstancePage", instances=InstanceOutputSerializer(many=True), count=serializers.IntegerField(),
                                       limit=serializers.IntegerField(), offset=serializers.IntegerField()),
                              **errors(400, 401, 403, 429)})
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data={k: v for k, v in request.query_params.items() if k == "status"})
        filters.is_valid(raise_exception=True)
        instances = selectors.instance_queryset(owner_id=_owner_scope(request), status=filters.validated_data.get("status"))
        return Response(page(request.query_params, instances, key="instances",
                             serialize=lambda rows: InstanceOutputSerializer(rows, many=True).data))


def _owner_scope(request: Request) -> str | None:
    """None for the operator (every instance); the client's owner id otherwise."""
    return None if request.user.is_operator else (request.user.owner_id or "")


class InstanceDestroyApi(APIView):
    """GET: one instance the caller may see (no secrets). DELETE: destroy it (the operator only)."""

    def get_permissions(self):
        return [IsOperator()] if self.request.method == "DELETE" else super().get_permissions()

    @extend_schema(summary="One instance the caller may see (no secrets).",
                   responses={200: InstanceOutputSerializer, **errors(401, 403, 404, 429)})
    def get(self, request: Request, instance_id: str) -> Response:
        return Response(InstanceOutputSerializer(selectors.instance_get(instance_id=instance_id, owner_id=_owner_scope(request))).data)

    @extend_schema(summary="Destroy one instance (operator only; `?dryRun=true` only checks).",
                   parameters=[OpenApiParameter("dryRun", bool, description="true/false/1/0; anything else is a 400.")],
                   responses={200: _OPERATION, **errors(400, 401, 403, 404, 409, 429)})
    def delete(self, request: Request, instance_id: str) -> Response:
        value = request.query_params.get("dryRun", "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise serializers.ValidationError({"dryRun": "Must be true or false"})  # a typo must never destroy
        dry_run = value in ("true", "1")
        return Response(operations.instance_destroy_one(instance_id=instance_id, dry_run=dry_run, actor=Actor.API).as_dict())


class InstanceCloneApi(APIView):
    class InputSerializer(serializers.Serializer):
        userConfig = serializers.DictField(required=False, allow_null=True)
        joinUrl = StrictCharField(max_length=limits.JOIN_URL_MAX, required=False, allow_null=True, allow_blank=True)

        def validate_joinUrl(self, value: str | None) -> str | None:
            return _join_url(value)

    @extend_schema(summary="Claim a new instance set up like this one (its template, model, instructions).",
                   request=InputSerializer, parameters=[ClaimOutputSerializer.QR_PARAMETER],
                   responses={200: ClaimOutputSerializer, **errors(400, 401, 403, 404, 409, 429, 502, 503)})
    def post(self, request: Request, instance_id: str) -> Response:
        draw_qr = ClaimOutputSerializer.draw_qr(request)
        data = self.InputSerializer(data=json_object_body(request, optional=True))
        data.is_valid(raise_exception=True)
        result = instance_clone(instance_id=instance_id, viewer=request.user, actor=Actor.API,
                                user_config=data.validated_data.get("userConfig"), join_url=data.validated_data.get("joinUrl") or None)
        return Response(ClaimOutputSerializer(result, context={"draw_qr": draw_qr}).data)


class InstanceRedeployApi(APIView):
    permission_classes = [IsOperator]

    @extend_schema(summary="Redeploy one instance (operator only).", request=None,
                   responses={200: _OPERATION, **errors(401, 403, 404, 409, 429)})
    def post(self, request: Request, instance_id: str) -> Response:
        return Response(operations.instance_redeploy_one(instance_id=instance_id, actor=Actor.API).as_dict())


class InstanceRecheckApi(APIView):
    permission_classes = [IsOperator]

    @extend_schema(summary="Check one instance's health now and answer its state (operator only).", request=None,
                   responses={200: InstanceOutputSerializer, **errors(401, 403, 404, 409, 429)})
    def post(self, request: Request, instance_id: str) -> Response:
        return Response(InstanceOutputSerializer(operations.instance_recheck(instance_id=instance_id, actor=Actor.API)).data)


class _InstanceApi(APIView):
    """Routes an instance calls about itself, with its own services token."""

    authentication_classes = [InstanceTokenAuthentication]
    permission_classes = [IsAuthenticated]


class PendingAcceptanceCompleteApi(_InstanceApi):
    @extend_schema(summary="The calling instance's join request was accepted (instance token).", request=None,
                   responses={200: OK_INSTANCE, **errors(400, 401, 403, 409)})
    def post(self, request: Request) -> Response:
        json_object_body(request, optional=True)
        instance = operations.pending_acceptance_complete(instance_id=request.user.instance_id, actor=Actor.INSTANCE)
        return Response({"ok": True, "instanceId": instance.pk, "status": instance.status})


class PendingAcceptanceFailApi(_InstanceApi):
    class InputSerializer(serializers.Serializer):
        reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="")

    @extend_schema(summary="The calling instance's join request failed (instance token).", request=InputSerializer,
                   responses={200: OK_INSTANCE, **errors(400, 401, 403, 409)})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=json_object_body(request, optional=True))
        data.is_valid(raise_exception=True)
        instance = operations.pending_acceptance_fail(instance_id=request.user.instance_id, reason=data.validated_data["reason"],
                                                      actor=Actor.INSTANCE)
        return Response({"ok": True, "instanceId": instance.pk, "status": instance.status})
