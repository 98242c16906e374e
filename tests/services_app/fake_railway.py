"""A stateful fake of Railway's GraphQL API for `responses`, reusable by any test.

    fake = FakeRailway(api_url, tokens=["tok"])     # tokens=None accepts any bearer token
    fake.install(responses_mock)                    # POST api_url is answered by the fake
    fake.calls["projectCreate"]                     # calls per root field (Counter)
    fake.requests                                   # every HTTP request, whatever it asked
    fake.aliases_asked                              # `pN: project(id:)` lookups, over all calls
    fake.log                                        # [(root field, variables, token)] in order
    fake.projects                                   # project id -> project dict (see _new_project)
    fake.fail("volumeCreate", times=1)              # the next call fails (GraphQL error by default)
    fake.set_status(project_id, "CRASHED")          # latest deployment status of its services
    fake.seed_project(status="SUCCESS")             # a complete, deployed project (bulk listings)
    fake.age(project_id, seconds)                   # move its createdAt back (orphan sweep)
    fake.missing_project_message = "Not Authorized" # how an unknown/deleted project id is answered

Every request is checked like Railway would: a bearer token, a document valid against
contracts/railway/schema.json, and variables coerced against the operation's declared input types
(a misspelt input field is an error). A deployment snapshots the service's configuration when it
starts, so tests can assert what the first boot saw (`project["services"][sid]["deployments"]`).
"""
from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLSchema,
    OperationDefinitionNode,
    build_client_schema,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "contracts" / "railway" / "schema.json"


@lru_cache(maxsize=1)
def railway_schema() -> GraphQLSchema:
    return build_client_schema(json.loads(SCHEMA_PATH.read_text())["data"])


class FakeRailway:
    def __init__(
        self,
        api_url: str,
        *,
        tokens: list[str] | None = None,
        workspace_id: str = "ws-1",
        deploy_status: str = "SUCCESS",
        honor_default_environment_name: bool = True,
    ) -> None:
        self.api_url = api_url
        self.tokens = set(tokens) if tokens else None
        self.workspace_id = workspace_id
        self.deploy_status = deploy_status
        self.honor_default_environment_name = honor_default_environment_name
        self.calls: Counter[str] = Counter()
        self.requests = 0
        self.aliases_asked = 0
        self.log: list[tuple[str, dict[str, Any], str]] = []
        self.projects: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, list[dict[str, Any]]] = {}
        self._seq = itertools.count(1)
        # What an unknown project id is answered with; real Railway says "Not Authorized" for a
        # deleted one (tests set it so).
        self.missing_project_message = "Project not found"

    # --- test controls --------------------------------------------------------------------------
    def install(self, responses_mock: Any) -> "FakeRailway":
        responses_mock.add_callback("POST", self.api_url, callback=self._handle, content_type="application/json")
        return self

    def fail(self, operation: str, times: int = 1, *, status: int = 200, message: str | None = None, after_apply: bool = False) -> None:
        """Make the next `times` calls of root field `operation` fail: HTTP `status` (a GraphQL
        error when 200); with `after_apply` the change is made first and only the answer is lost."""
        failure = {"status": status, "message": message or f"{operation} failed (fake)", "after_apply": after_apply}
        self._failures.setdefault(operation, []).extend([failure] * times)

    def set_status(self, project_id: str, status: str) -> None:
        for service in self.projects[project_id]["services"].values():
            if service["deployments"]:
                service["deployments"][-1]["status"] = status

    def seed_project(self, *, name: str | None = None, status: str = "SUCCESS", workspace_id: str | None = None) -> dict[str, Any]:
        """A project as the Railway provider leaves it: one service, volume, domain, deployment."""
        project = self._new_project(name or f"convos-agent-seed{next(self._seq)}", workspace_id or self.workspace_id, "production")
        env_id = next(iter(project["environments"]))
        service = self._new_service(project, env_id, "runtime", {"INSTANCE_ID": project["name"]})
        service.update(source={"image": "ghcr.io/example/runtime:seed"}, volumes=["/data"], domains=[f"{service['id']}.up.railway.app"])
        self._deploy(service, status=status)
        return project

    def age(self, project_id: str, seconds: float) -> None:
        created = datetime.fromisoformat(self.projects[project_id]["createdAt"].replace("Z", "+00:00"))
        self.projects[project_id]["createdAt"] = (created - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    def service_of(self, project_id: str) -> dict[str, Any]:
        (service,) = self.projects[project_id]["services"].values()
        return service

    # --- request handling -----------------------------------------------------------------------
    def _handle(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.requests += 1
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if not token or (self.tokens is not None and token not in self.tokens):
            return _errors(401, "Not Authorized")
        body = json.loads(request.body)
        document = parse(body["query"])
        errors = validate(railway_schema(), document)
        if errors:
            return _errors(400, errors[0].message)
        operation = _operation(document, body.get("operationName"))
        coerced = get_variable_values(railway_schema(), operation.variable_definitions or [], body.get("variables") or {})
        if isinstance(coerced, list):
            return _errors(400, coerced[0].message)
        if len(operation.selection_set.selections) > 1 or operation.selection_set.selections[0].alias:
            return self._handle_aliases(operation, coerced, body.get("variables") or {}, token)
        node = operation.selection_set.selections[0]
        field = node.name.value
        root = railway_schema().mutation_type if operation.operation.value == "mutation" else railway_schema().query_type
        arguments = get_argument_values(root.fields[field], node, coerced)
        self.calls[field] += 1
        self.log.append((field, body.get("variables") or {}, token))
        resolver = getattr(self, f"_gql_{field}", None)
        if resolver is None:
            return _errors(400, f"the fake does not implement {field}")

        failure = self._failures[field].pop(0) if self._failures.get(field) else None
        if failure and not failure["after_apply"]:
            return self._failure(failure)
        try:
            result = resolver(**arguments)
        except LookupError as exc:
            return _errors(200, str(exc.args[0]))
        if failure:
            return self._failure(failure)
        return 200, {}, json.dumps({"data": {field: result}})

    def _handle_aliases(self, operation: Any, coerced: dict[str, Any], variables: dict[str, Any], token: str) -> tuple[int, dict[str, str], str]:
        """Several aliased root fields in one document, as Railway answers them: each resolved on
        its own, an error carrying the `path` of its alias. Every field here (`project`) is
        non-null, so one error nulls the whole `data` (GraphQL's null propagation)."""
        nodes = list(operation.selection_set.selections)
        fields = {node.name.value for node in nodes}
        if fields != {"project"}:
            return _errors(400, f"the fake answers aliased project lookups only, not {sorted(fields)}")
        root = railway_schema().query_type
        self.calls["project"] += 1  # one call, however many aliases it carries
        self.aliases_asked += len(nodes)
        self.log.append(("project", variables, token))
        failure = self._failures["project"].pop(0) if self._failures.get("project") else None
        if failure:
            return self._failure(failure)
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for node in nodes:
            key = node.alias.value if node.alias else node.name.value
            try:
                data[key] = self._gql_project(**get_argument_values(root.fields["project"], node, coerced))
            except LookupError as exc:
                errors.append({"message": str(exc.args[0]), "path": [key], "locations": [{"line": 1, "column": 1}]})
        if errors:
            return 200, {}, json.dumps({"errors": errors, "data": None})
        return 200, {}, json.dumps({"data": data})

    @staticmethod
    def _failure(failure: dict[str, Any]) -> tuple[int, dict[str, str], str]:
        if failure["status"] == 200:
            return _errors(200, failure["message"])
        return failure["status"], {}, json.dumps({"error": failure["message"]})

    # --- state helpers ----------------------------------------------------------------------------
    def _id(self) -> str:
        return str(uuid.uuid4())

    def _new_project(self, name: str, workspace_id: str, environment_name: str) -> dict[str, Any]:
        project = {"id": self._id(), "name": name, "workspaceId": workspace_id, "environments": {self._id(): environment_name}, "services": {},
                   "createdAt": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}
        self.projects[project["id"]] = project
        return project

    def _new_service(self, project: dict[str, Any], environment_id: str, name: str, variables: dict[str, str]) -> dict[str, Any]:
        service = {
            "id": self._id(), "name": name, "environmentId": environment_id, "variables": dict(variables), "source": None,
            "startCommand": None, "registryCredentials": None, "limits": {}, "volumes": [], "domains": [], "deployments": [],
        }
        project["services"][service["id"]] = service
        return service

    def _project(self, project_id: str) -> dict[str, Any]:
        if project_id not in self.projects:
            raise LookupError(self.missing_project_message)
        return self.projects[project_id]

    def _service(self, service_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        for project in self.projects.values():
            if service_id in project["services"]:
                return project, project["services"][service_id]
        raise LookupError("Service not found")

    def _deploy(self, service: dict[str, Any], status: str | None = None) -> str:
        if not service["source"]:
            raise LookupError("Service has no source to deploy")
        keys = ("variables", "volumes", "domains", "limits", "source", "startCommand", "registryCredentials")
        snapshot = {k: json.loads(json.dumps(service[k])) for k in keys}
        deployment = {"id": self._id(), "status": status or self.deploy_status, **snapshot}
        service["deployments"].append(deployment)
        return deployment["id"]

    def _environment_edges(self, project: dict[str, Any]) -> dict[str, Any]:
        return {"edges": [{"node": {"id": i, "name": n}} for i, n in project["environments"].items()]}

    # --- resolvers (one per root field; keyword arguments are the coerced field arguments) --------
    def _gql_projectCreate(self, input: dict[str, Any]) -> dict[str, Any]:
        env_name = input.get("defaultEnvironmentName") if self.honor_default_environment_name else None
        project = self._new_project(input["name"], input.get("workspaceId") or "", env_name or "production")
        return {"id": project["id"], "name": project["name"], "environments": self._environment_edges(project)}

    def _gql_projectDelete(self, id: str) -> bool:
        self._project(id)
        del self.projects[id]
        return True

    def _gql_environmentCreate(self, input: dict[str, Any]) -> dict[str, Any]:
        project = self._project(input["projectId"])
        env_id = self._id()
        project["environments"][env_id] = input["name"]
        return {"id": env_id, "name": input["name"]}

    def _gql_environmentRename(self, id: str, input: dict[str, Any]) -> dict[str, Any]:
        for project in self.projects.values():
            if id in project["environments"]:
                project["environments"][id] = input["name"]
                return {"id": id, "name": input["name"]}
        raise LookupError("Environment not found")

    def _gql_serviceCreate(self, input: dict[str, Any]) -> dict[str, Any]:
        project = self._project(input["projectId"])
        environment_id = input.get("environmentId") or next(iter(project["environments"]))
        service = self._new_service(project, environment_id, input.get("name") or "service", input.get("variables") or {})
        if input.get("source"):  # Railway deploys a service created with a source at once
            service.update(source=input["source"], registryCredentials=input.get("registryCredentials"))
            self._deploy(service)
        return {"id": service["id"], "name": service["name"]}

    def _gql_volumeCreate(self, input: dict[str, Any]) -> dict[str, Any]:
        self._project(input["projectId"])
        _, service = self._service(input["serviceId"])
        if input["mountPath"] in service["volumes"]:
            raise LookupError("A volume is already mounted at this path")
        service["volumes"].append(input["mountPath"])
        return {"id": self._id(), "name": "volume"}

    def _gql_serviceDomainCreate(self, input: dict[str, Any]) -> dict[str, Any]:
        _, service = self._service(input["serviceId"])
        domain = f"{service['name']}-{len(service['domains'])}-{service['id'][:8]}.up.railway.app"
        service["domains"].append(domain)
        return {"id": self._id(), "domain": domain}

    def _gql_serviceInstanceLimitsUpdate(self, input: dict[str, Any]) -> bool:
        _, service = self._service(input["serviceId"])
        service["limits"].update({k: input[k] for k in ("vCPUs", "memoryGB") if input.get(k) is not None})
        return True

    def _gql_serviceInstanceUpdate(self, serviceId: str, input: dict[str, Any], environmentId: str | None = None) -> bool:
        _, service = self._service(serviceId)
        for key in ("source", "startCommand", "registryCredentials"):
            if input.get(key) is not None:
                service[key] = input[key]
        return True

    def _gql_serviceInstanceDeployV2(self, serviceId: str, environmentId: str, commitSha: str | None = None) -> str:
        return self._deploy(self._service(serviceId)[1])

    def _gql_projects(self, workspaceId: str | None = None, first: int | None = None, after: str | None = None, **_: Any) -> dict[str, Any]:
        listed = [p for p in self.projects.values() if workspaceId is None or p["workspaceId"] == workspaceId]
        start = int(after) + 1 if after else 0
        page = listed[start:start + (first or 100)]
        end = start + len(page) - 1
        return {
            "pageInfo": {"hasNextPage": end + 1 < len(listed), "endCursor": str(end) if page else after},
            "edges": [{"cursor": str(start + i), "node": self._project_node(p)} for i, p in enumerate(page)],
        }

    def _gql_project(self, id: str) -> dict[str, Any]:
        """A project by id, shaped like a `projects` listing node. A workspace token sees only its
        workspace: another one's project is "Not Authorized", like a deleted one."""
        project = self._project(id)
        if project["workspaceId"] != self.workspace_id:
            raise LookupError("Not Authorized")
        return self._project_node(project)

    def _project_node(self, project: dict[str, Any]) -> dict[str, Any]:
        def instances(env_id: str) -> list[dict[str, Any]]:
            return [
                {"node": {
                    "serviceId": s["id"], "environmentId": env_id,
                    "latestDeployment": {"id": s["deployments"][-1]["id"], "status": s["deployments"][-1]["status"]} if s["deployments"] else None,
                    "domains": {"serviceDomains": [{"domain": d} for d in s["domains"]]},
                }}
                for s in project["services"].values() if s["environmentId"] == env_id
            ]

        return {
            "id": project["id"], "name": project["name"], "createdAt": project["createdAt"],
            "environments": {"edges": [
                {"node": {"id": i, "name": n, "serviceInstances": {"edges": instances(i)}}} for i, n in project["environments"].items()
            ]},
        }


def _operation(document: Any, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for op in operations:
        if name is None or (op.name and op.name.value == name):
            return op
    raise AssertionError(f"operation {name!r} not in the document")


def _errors(status: int, message: str) -> tuple[int, dict[str, str], str]:
    return status, {}, json.dumps({"errors": [{"message": message}], "data": None})
