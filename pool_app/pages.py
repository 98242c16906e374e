"""The operator's claim page at `/` (seed 003's web form): the same claim as the API, for a person
logged in to the admin. The answer shows the invite link, its QR code and the instance id; a claim
that cannot be made shows why, in words."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from convos.auth import OPERATOR
from convos.errors import DomainError
from pool_app.models import Actor
from pool_app.qr import qr_data_url
from pool_app.services import instance_claim
from pool_app.services.claim import claim_spec
from runtime import limits
from runtime.limits import DEFAULT_AGENT_NAME, DEFAULT_INSTRUCTIONS


class ClaimForm(forms.Form):
    agent_name = forms.CharField(label="Agent name", max_length=limits.AGENT_NAME_MAX, required=False,
                                 widget=forms.TextInput(attrs={"placeholder": DEFAULT_AGENT_NAME}))
    instructions = forms.CharField(label="Instructions", max_length=limits.INSTRUCTIONS_MAX, required=False, strip=False,
                                   widget=forms.Textarea(attrs={"rows": 6, "placeholder": DEFAULT_INSTRUCTIONS}))
    join_url = forms.CharField(label="Join an existing conversation (invite link, optional)", max_length=limits.JOIN_URL_MAX,
                               required=False)


@staff_member_required
def claim_page(request: HttpRequest) -> HttpResponse:
    form = ClaimForm(request.POST or None)
    result = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            spec = claim_spec(viewer=OPERATOR, agent_name=data["agent_name"] or None, instructions=data["instructions"] or None,
                              join_url=data["join_url"].strip() or None, owner_id=OPERATOR.owner_id, source="console")
            claimed = instance_claim(spec=spec, actor=Actor.ADMIN)
        except DomainError as exc:
            field = _form_field(getattr(exc, "field", ""))
            # At its field, the API's "joinUrl: " prefix left out: the form names the field itself.
            form.add_error(field, exc.message.split(": ", 1)[1] if field and ": " in exc.message else exc.message)
        else:
            result = {"claim": claimed, "qr": qr_data_url(claimed.invite_url) if claimed.invite_url else None}
            form = ClaimForm()
    # The admin's own context (header, user tools, stylesheet): the page is part of the console.
    return render(request, "pool_app/claim.html", {**admin.site.each_context(request), "form": form, "result": result,
                                                    "title": "Claim an agent"})


def _form_field(api_field: str) -> str | None:
    return {"agentName": "agent_name", "instructions": "instructions", "joinUrl": "join_url"}.get(api_field)
