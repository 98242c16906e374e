"""Who calls the REST API, as every app sees it: the principal DRF puts in `request.user`, and
how a bearer token is read. Authenticating the pool's keys is the pool's (pool_app/auth.py):
this core module imports no app.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: DRF puts this in `request.user`."""

    name: str
    owner_id: str | None = None
    is_operator: bool = False
    client_id: int | None = None
    rate_limit_per_minute: int | None = None

    @property
    def is_authenticated(self) -> bool:
        return True

    def can_see_owner(self, owner_id: str) -> bool:
        return self.is_operator or (bool(owner_id) and owner_id == self.owner_id)


OPERATOR = ApiPrincipal(name="operator", owner_id="operator", is_operator=True)


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
