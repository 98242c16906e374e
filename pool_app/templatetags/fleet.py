"""The fleet dashboard on the admin's front page (admin/pool_app/fleet_index.html)."""
from django import template

from pool_app.dashboard import fleet_dashboard

register = template.Library()


@register.inclusion_tag("admin/pool_app/fleet_dashboard.html", takes_context=True)
def fleet_dashboard_panel(context) -> dict:
    return {**fleet_dashboard(), "request": context.get("request")}
