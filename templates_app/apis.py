"""REST endpoints for templates. Thin: validate, call one service or selector, serialize.

One view per route (the routes are shared by several methods); each method validates its own
input. model and tools go out exactly as stored (seed 002): `{"default", "allow_override"}` and
`[{"id", "provisioning"}]`.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from convos.serializer_fields import StrictCharField
from convos.pagination import page
from convos.schema import PAGE_PARAMETERS, errors, obj
from convos.parsers import json_object_body
from templates_app import selectors, services
from templates_app.models import AgentTemplate, Visibility
from templates_app.validation import TemplateInputSerializer


class TemplateOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    agentName = serializers.CharField(source="agent_name")
    instructions = serializers.CharField()
    model = serializers.JSONField()
    tools = serializers.JSONField()
    visibility = serializers.CharField()
    creatorId = serializers.CharField(source="creator_id")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


def _out(template: AgentTemplate) -> dict:
    return TemplateOutputSerializer(template).data


def _validated(view: APIView, request: Request, *, partial: bool) -> dict:
    data = view.InputSerializer(data=json_object_body(request), partial=partial)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


class TemplatesApi(APIView):
    """GET: list (public + own; the operator: all). POST: create, owned by the caller."""

    InputSerializer = TemplateInputSerializer  # shared with the admin form's checks

    class FilterSerializer(serializers.Serializer):
        visibility = serializers.ChoiceField(choices=Visibility.values, required=False)
        creator = StrictCharField(max_length=200, required=False)

    @extend_schema(operation_id="api_templates_list", summary="Templates the caller may see (public and own; the operator: all).",
                   parameters=[FilterSerializer, *PAGE_PARAMETERS],
                   responses={200: obj("TemplatePage", templates=TemplateOutputSerializer(many=True), count=serializers.IntegerField(),
                                       limit=serializers.IntegerField(), offset=serializers.IntegerField()),
                              **errors(400, 401, 403, 429)})
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params.dict())  # a plain dict: `?visibility=` is an error, not "no filter"
        filters.is_valid(raise_exception=True)
        templates = selectors.template_list(
            viewer=request.user,
            visibility=filters.validated_data.get("visibility"),
            creator_id=filters.validated_data.get("creator"),
        )
        return Response(page(request.query_params, templates, key="templates",
                             serialize=lambda rows: TemplateOutputSerializer(rows, many=True).data))

    @extend_schema(summary="Create a template owned by the caller.", request=TemplateInputSerializer,
                   responses={201: TemplateOutputSerializer, **errors(400, 401, 403, 409, 429)})
    def post(self, request: Request) -> Response:
        template = services.template_create(viewer=request.user, data=_validated(self, request, partial=False))
        return Response(_out(template), status=status.HTTP_201_CREATED)


class TemplateDetailApi(APIView):
    """GET one; PUT replaces it (omitted tools/model/visibility go back to defaults); PATCH changes
    the fields given; DELETE removes it (instances claimed from it are untouched)."""

    InputSerializer = TemplateInputSerializer

    @extend_schema(summary="One template the caller may see.", responses={200: TemplateOutputSerializer, **errors(401, 403, 404, 429)})
    def get(self, request: Request, template_id: str) -> Response:
        return Response(_out(selectors.template_get(template_id=template_id, viewer=request.user)))

    @extend_schema(summary="Replace a template (omitted tools/model/visibility go back to defaults).", request=TemplateInputSerializer,
                   responses={200: TemplateOutputSerializer, **errors(400, 401, 403, 404, 409, 429)})
    def put(self, request: Request, template_id: str) -> Response:
        return self._update(request, template_id, partial=False)

    @extend_schema(summary="Change the fields given.", request=TemplateInputSerializer,
                   responses={200: TemplateOutputSerializer, **errors(400, 401, 403, 404, 409, 429)})
    def patch(self, request: Request, template_id: str) -> Response:
        return self._update(request, template_id, partial=True)

    def _update(self, request: Request, template_id: str, *, partial: bool) -> Response:
        data = _validated(self, request, partial=partial)
        return Response(_out(services.template_update(template_id=template_id, viewer=request.user, data=data)))

    @extend_schema(summary="Delete a template (instances claimed from it are untouched).",
                   responses={204: None, **errors(401, 403, 404, 409, 429)})
    def delete(self, request: Request, template_id: str) -> Response:
        services.template_delete(template_id=template_id, viewer=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplateVisibilityApi(APIView):
    class InputSerializer(serializers.Serializer):
        visibility = serializers.ChoiceField(choices=Visibility.values)

    @extend_schema(summary="Set a template's visibility.", request=InputSerializer,
                   responses={200: TemplateOutputSerializer, **errors(400, 401, 403, 404, 409, 429)})
    def post(self, request: Request, template_id: str) -> Response:
        data = self.InputSerializer(data=json_object_body(request))
        data.is_valid(raise_exception=True)
        template = services.template_set_visibility(
            template_id=template_id, viewer=request.user, visibility=data.validated_data["visibility"],
        )
        return Response(_out(template))
