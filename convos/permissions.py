from rest_framework.permissions import BasePermission


class IsOperator(BasePermission):
    """Fleet operations are for the operator key (POOL_API_KEY) only."""

    message = "This action needs the operator key"

    def has_permission(self, request, view) -> bool:
        return bool(getattr(request.user, "is_operator", False))
