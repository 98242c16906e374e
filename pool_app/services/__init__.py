"""Pool write operations. Import the functions from here; API, admin, CLI and tasks all share them."""
from pool_app.services.claim import ClaimResult, instance_claim
from pool_app.services.recovery import claim_recover
from pool_app.services.fleet import instance_destroy, instances_create
from pool_app.services.tick import pool_tick

__all__ = ["ClaimResult", "claim_recover", "instance_claim", "instance_destroy", "instances_create", "pool_tick"]
