"""The database alias this app writes to: derived from the router, the one owner of routing."""
from convos.db_router import alias_for_app

DB = alias_for_app("services_app")
