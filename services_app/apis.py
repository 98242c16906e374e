"""The services HTTP API (seed 002), mounted under /services/. Views validate, call one function
of services_app.services, and serialize; the in-process facade calls the same functions."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convos.serializer_fields import StrictBooleanField, StrictCharField
from convos.parsers import json_object_body
from runtime import limits
from services_app import services
from services_app.auth import IsPool, IsPoolOrSameInstance, ServicesAuthentication

INSTANCE_ID = StrictCharField(max_length=32)


class _ServicesApi(APIView):
    authentication_classes = [ServicesAuthentication]
    permission_classes = [IsPool]


class CreateInstanceApi(_ServicesApi):
    class InputSerializer(serializers.Serializer):
        instanceId = StrictCharField(max_length=32)

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        return Response(services.instance_create(instance_id=data.validated_data["instanceId"]))


class DestroyInstanceApi(_ServicesApi):
    def delete(self, request: Request, instance_id: str) -> Response:
        return Response(services.instance_destroy(instance_id=instance_id))


class _InstanceIdsInput(serializers.Serializer):
    instanceIds = serializers.ListField(child=StrictCharField(max_length=32), max_length=10_000, allow_empty=True)


class StatusBatchApi(_ServicesApi):
    InputSerializer = _InstanceIdsInput

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        return Response(services.status_batch(instance_ids=data.validated_data["instanceIds"]))


class RedeployApi(_ServicesApi):
    def post(self, request: Request, instance_id: str) -> Response:
        return Response(services.instance_redeploy(instance_id=instance_id))


class ProvisionToolApi(_ServicesApi):
    permission_classes = [IsPoolOrSameInstance]

    class InputSerializer(serializers.Serializer):
        userConfig = serializers.DictField(required=False, allow_null=True)

    def post(self, request: Request, instance_id: str, tool_id: str) -> Response:
        data = self.InputSerializer(data=json_object_body(request, optional=True))
        data.is_valid(raise_exception=True)
        return Response(services.tool_provision(instance_id=instance_id, tool_id=tool_id, user_config=data.validated_data.get("userConfig"),
                                                by_instance=not request.user.is_pool))


class CheckUserConfigApi(_ServicesApi):
    class InputSerializer(serializers.Serializer):
        userConfig = serializers.DictField()

    def post(self, request: Request, tool_id: str) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        return Response(services.user_config_check(tool_id=tool_id, user_config=data.validated_data["userConfig"]))


class DestroyToolApi(_ServicesApi):
    @extend_schema(operation_id="services_destroy_tool")
    def delete(self, request: Request, instance_id: str, tool_id: str, resource_id: str) -> Response:
        return Response(services.tool_destroy(instance_id=instance_id, tool_id=tool_id, resource_id=resource_id))


class ConfigureApi(_ServicesApi):
    class InputSerializer(serializers.Serializer):
        agentName = StrictCharField(max_length=limits.AGENT_NAME_MAX)
        instructions = StrictCharField(max_length=limits.INSTRUCTIONS_MAX, allow_blank=True, trim_whitespace=False)
        model = StrictCharField(max_length=limits.MODEL_NAME_MAX, required=False, allow_null=True, allow_blank=True)
        joinUrl = StrictCharField(max_length=500, required=False, allow_null=True, allow_blank=True)
        update = StrictBooleanField(required=False, default=False)
        selfProvisionTools = serializers.ListField(child=StrictCharField(max_length=32), required=False, default=list, max_length=32)
        profileImage = StrictCharField(max_length=limits.PROFILE_IMAGE_MAX, required=False, allow_null=True, allow_blank=True)
        metadata = serializers.DictField(child=StrictCharField(max_length=limits.METADATA_VALUE_MAX, allow_blank=True),
                                         required=False, default=dict)

    def post(self, request: Request, instance_id: str) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return Response(services.instance_configure(
            instance_id=instance_id, agent_name=v["agentName"], instructions=v["instructions"],
            model=v.get("model") or None, join_url=v.get("joinUrl") or None, update=v["update"],
            self_provision_tools=v["selfProvisionTools"], profile_image=v.get("profileImage") or None, metadata=v["metadata"],
        ))


class AbandonCreationApi(_ServicesApi):
    def post(self, request: Request, instance_id: str) -> Response:
        return Response(services.instance_abandon_creation(instance_id=instance_id))


class ResetApi(_ServicesApi):
    def post(self, request: Request, instance_id: str) -> Response:
        return Response(services.instance_reset(instance_id=instance_id))


class ChatApi(_ServicesApi):
    class InputSerializer(serializers.Serializer):
        text = StrictCharField(max_length=limits.CHAT_TEXT_MAX)
        senderName = StrictCharField(max_length=limits.SENDER_NAME_MAX, required=False, default="operator")

    def post(self, request: Request, instance_id: str) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return Response(services.instance_chat(instance_id=instance_id, text=v["text"], sender_name=v["senderName"]))


class InstanceForTokenApi(_ServicesApi):
    """Which instance holds this services token (the pool authenticates instances through it)."""

    class InputSerializer(serializers.Serializer):
        token = StrictCharField(max_length=200)

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        return Response({"instanceId": services.instance_for_token(token=data.validated_data["token"])})


class ConvosStatusApi(_ServicesApi):
    def get(self, request: Request, instance_id: str) -> Response:
        return Response(services.instance_convos_status(instance_id=instance_id))


class ConvosStatusBatchApi(_ServicesApi):
    InputSerializer = _InstanceIdsInput

    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        return Response(services.instance_convos_status_batch(instance_ids=data.validated_data["instanceIds"]))


class RegistryApi(_ServicesApi):
    @extend_schema(summary="The tools the pool can provision and whether each is enabled here.",
                   responses={200: inline_serializer("RegistryTool", many=True, fields={
                       "toolId": serializers.CharField(), "name": serializers.CharField(),
                       "provisioning": serializers.ListField(child=serializers.CharField()), "always": serializers.BooleanField(),
                       "enabled": serializers.BooleanField(), "reason": serializers.CharField(required=False, allow_null=True)})})
    def get(self, request: Request) -> Response:
        return Response(services.registry())


class TeardownRetryApi(_ServicesApi):
    def post(self, request: Request) -> Response:
        return Response(services.teardown_retry())


class OrphanSweepApi(_ServicesApi):
    def post(self, request: Request) -> Response:
        return Response(services.orphans_sweep(delete_allowed=request.data.get("deleteAllowed") is not False))


class ProviderStatusApi(_ServicesApi):
    @extend_schema(summary="Each provider's last success and last error.",
                   responses={200: inline_serializer("ProviderStatus", many=True, fields={
                       "provider": serializers.CharField(), "lastError": serializers.CharField(allow_blank=True),
                       "lastErrorAt": serializers.DateTimeField(allow_null=True), "lastOkAt": serializers.DateTimeField(allow_null=True)})})
    def get(self, request: Request) -> Response:
        return Response(services.provider_statuses())


class InstanceInfoApi(_ServicesApi):
    """One instance's infra and tool resources, without secrets (the operators' instance page)."""

    def get(self, request: Request, instance_id: str) -> Response:
        return Response(services.instance_info(instance_id=instance_id))
