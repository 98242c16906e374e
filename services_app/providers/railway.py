"""Railway infra provider: one Railway project per agent instance, deployed from the GHCR image.

Creation order (why): production set variables, limits and image in separate calls and about one
instance in ten booted before its variables arrived. Here the service is created with ALL its
variables and WITHOUT a source; a service with nothing to run cannot deploy, so the volume, the
domain and the limits are added while nothing can boot. Attaching the image (serviceInstanceUpdate
with source.image, start command and registry credentials) is the last configuration call, and
serviceInstanceDeployV2 then starts the first deployment. Even if Railway deployed on the image
attach by itself, everything would already be in place at that moment.

Typed mutations are used rather than one environmentPatchCommit: its `patch` is an opaque
EnvironmentConfig scalar that the schema cannot validate, while every document here is checked
against contracts/railway/schema.json by the test suite.

Every failure after projectCreate deletes the project before the error is raised, and a
projectCreate whose answer was lost (timeout, 5xx) is looked up by name and deleted, so a failed
creation leaves nothing behind at Railway.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from django.utils.dateparse import parse_datetime

from services_app.providers import railway_documents as docs
from services_app.providers.base import DeployState, InfraRef, OwnedResource, ProviderError, owned_instance_id
from services_app.providers.railway_client import RailwayClient, RailwayError, shared_client

logger = logging.getLogger(__name__)

PROJECT_PREFIX = "convos-agent-"
SERVICE_NAME = "runtime"
VOLUME_MOUNT_PATH = "/data"
MAX_PAGES = 10_000  # guards the paging loop against a cursor that never advances
# What Railway answers for a project lookup (`project(id:)`) whose project is gone: deleted, or
# never visible to this token (Railway says "Not Authorized" rather than reveal it exists).
_PROJECT_GONE = re.compile(r"not found|does not exist|not authori[sz]ed", re.I)


@dataclass
class RailwayProvider:
    name = "railway"
    client: RailwayClient
    workspace_id: str
    environment_name: str
    image: str
    url_template: str = "https://{domain}"
    page_size: int = 50
    vcpus: float | None = None
    memory_gb: float | None = None
    registry_username: str = ""
    registry_password: str = ""
    # Empty: the image's own start command (any image speaking the protocol, the production one
    # included, runs as built). RAILWAY_START_COMMAND overrides it.
    start_command: str = ""
    # Projects asked about per call by an on-demand deploy_states (aliased `project(id:)` lookups).
    aliases_per_call: int = 50

    @property
    def status_scope(self) -> str:
        """Names this account and workspace in the services layer's status-sweep bookkeeping."""
        import hashlib

        return hashlib.sha256(f"{self.client.api_url}|{self.workspace_id}".encode()).hexdigest()[:16]

    @classmethod
    def from_settings(cls) -> "RailwayProvider":
        from django.conf import settings

        tokens = [t for t in settings.RAILWAY_API_TOKENS if t]
        required = (("RAILWAY_API_TOKENS (or RAILWAY_API_TOKEN)", tokens), ("RAILWAY_WORKSPACE_ID", settings.RAILWAY_WORKSPACE_ID))
        missing = [name for name, value in required if not value]
        if missing:
            raise ProviderError(f"The Railway provider needs {' and '.join(missing)} to be set", permanent=True)
        return cls(
            client=shared_client(
                settings.RAILWAY_API_URL,
                tokens,
                rps=settings.RAILWAY_RATE_LIMIT_RPS,
                create_interval_s=settings.RAILWAY_PROJECT_CREATE_INTERVAL_S,
                timeout_s=settings.RAILWAY_TIMEOUT_S,
                max_retries=settings.RAILWAY_MAX_RETRIES,
                redis_url=settings.REDIS_URL,
            ),
            workspace_id=settings.RAILWAY_WORKSPACE_ID,
            environment_name=settings.RAILWAY_ENVIRONMENT_NAME,
            image=settings.RAILWAY_RUNTIME_IMAGE,
            url_template=settings.RAILWAY_INSTANCE_URL_TEMPLATE,
            page_size=settings.RAILWAY_PROJECTS_PAGE_SIZE,
            vcpus=settings.RAILWAY_INSTANCE_VCPUS,
            memory_gb=settings.RAILWAY_INSTANCE_MEMORY_GB,
            registry_username=settings.GHCR_USERNAME,
            registry_password=settings.GHCR_TOKEN,
            start_command=settings.RAILWAY_START_COMMAND,
            aliases_per_call=settings.RAILWAY_STATUS_ALIASES_PER_CALL,
        )

    # --- InfraProvider ---------------------------------------------------------------------------
    def create(self, *, instance_id: str, variables: dict[str, str]) -> InfraRef:
        project_name = f"{PROJECT_PREFIX}{instance_id}"
        try:
            project = _field(
                self.client.execute(
                    docs.PROJECT_CREATE,
                    {"input": {"name": project_name, "workspaceId": self.workspace_id, "defaultEnvironmentName": self.environment_name}},
                ),
                "projectCreate",
            )
            project_id = str(_field(project, "id"))
        except RailwayError as exc:
            if exc.maybe_applied:
                self._delete_projects_named(project_name)
            raise
        try:
            return self._build(instance_id, project_id, project, variables)
        except Exception as exc:
            logger.warning("Railway create of %s failed; deleting project %s", instance_id, project_id)
            try:
                self._delete_project(project_id)
            except ProviderError as cleanup:
                raise ProviderError(
                    f"{_message(exc)}; deleting its project {project_id} failed too ({cleanup.message}): it is left behind"
                ) from exc
            if isinstance(exc, ProviderError):
                raise
            raise ProviderError(f"Railway create of {instance_id} failed: {_message(exc)}") from exc

    def destroy(self, ref: InfraRef) -> None:
        if ref.railway_project_id:
            self._delete_project(ref.railway_project_id)

    def deploy_states(self, refs: list[InfraRef], *, full: bool = True) -> dict[str, DeployState]:
        """With `full`, one paged listing of the whole workspace (ceil(projects / page size) calls,
        whatever the number of refs); without, one aliased lookup per `aliases_per_call` refs
        (status_batch asks this way about the few instances their health check does not vouch for)."""
        if not full:
            return self._deploy_states_by_id(refs)
        states = {ref.instance_id: DeployState(deploy_status=None, url=ref.url) for ref in refs}
        wanted: dict[str, list[InfraRef]] = {}
        for ref in refs:
            if ref.railway_project_id:
                wanted.setdefault(ref.railway_project_id, []).append(ref)
        if not wanted:
            return states
        remaining = set(wanted)
        for node in self._projects(docs.WORKSPACE_PROJECTS, stop=lambda: not remaining):
            project_id = str(node.get("id"))
            if project_id not in remaining:
                continue
            remaining.discard(project_id)
            for ref in wanted[project_id]:
                states[ref.instance_id] = self._state(ref, _service_instances(node))
        if len(wanted) > 1 and remaining == set(wanted):
            # Not one known project listed: far likelier a wrong RAILWAY_WORKSPACE_ID or token than
            # a fleet deleted behind the pool's back. Reporting REMOVED would get it all destroyed.
            raise ProviderError(
                f"None of {len(wanted)} Railway projects is in workspace {self.workspace_id}: check RAILWAY_WORKSPACE_ID",
                permanent=True,
            )
        # The listing is complete (paging ran to its end): a project it lacks no longer exists.
        for project_id in remaining:
            for ref in wanted[project_id]:
                states[ref.instance_id] = DeployState(deploy_status="REMOVED", url=ref.url)
        return states

    def _deploy_states_by_id(self, refs: list[InfraRef]) -> dict[str, DeployState]:
        states = {ref.instance_id: DeployState(deploy_status=None, url=ref.url) for ref in refs}
        wanted: dict[str, list[InfraRef]] = {}
        for ref in refs:
            if ref.railway_project_id:
                wanted.setdefault(ref.railway_project_id, []).append(ref)
        project_ids = list(wanted)
        missing: set[str] = set()
        size = max(1, self.aliases_per_call)
        for start in range(0, len(project_ids), size):
            nodes, gone = self._projects_by_id(project_ids[start:start + size])
            missing |= gone
            for project_id, node in nodes.items():
                for ref in wanted[project_id]:
                    states[ref.instance_id] = self._state(ref, _service_instances(node))
        if len(wanted) > 1 and missing == set(wanted):
            # As with the listing: every project unknown is a wrong token or workspace, not a fleet
            # deleted behind the pool's back (reporting REMOVED would get it all destroyed).
            raise ProviderError(f"None of {len(wanted)} Railway projects is visible with this token: check RAILWAY_API_TOKENS",
                                permanent=True)
        for project_id in missing:
            for ref in wanted[project_id]:
                states[ref.instance_id] = DeployState(deploy_status="REMOVED", url=ref.url)
        return states

    def _projects_by_id(self, project_ids: list[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """(project nodes by id, ids Railway says are gone) for up to aliases_per_call ids, in one call.

        `project` is non-null in Railway's schema, so one failing alias nulls the whole `data`
        (GraphQL's null propagation): the not-found aliases are dropped and the rest asked again,
        which costs a second call only for a batch that holds a removed project."""
        nodes: dict[str, dict[str, Any]] = {}
        gone: set[str] = set()
        pending = list(project_ids)
        while pending:
            by_alias = {docs.project_alias(i): project_id for i, project_id in enumerate(pending)}
            errors: list[dict[str, Any]] = []
            data = self.client.execute(docs.project_states_document(len(pending)), by_alias, field_errors=errors)
            failed: set[str] = set()
            for error in errors:
                alias = str(error["path"][0])
                message = str(error.get("message") or "")
                if alias not in by_alias or not _PROJECT_GONE.search(message):
                    raise ProviderError(f"Railway ProjectDeployStates: {message or 'unknown GraphQL error'}")
                failed.add(alias)
            gone |= {by_alias[a] for a in failed}
            rest = []
            for alias, project_id in by_alias.items():
                node = data.get(alias)
                if alias in failed:
                    continue
                if isinstance(node, dict):
                    nodes[project_id] = node
                else:
                    rest.append(project_id)
            if rest and not failed:  # nothing dropped, yet not every project answered
                raise RailwayError("Railway ProjectDeployStates: the answer lacks some projects")
            pending = rest
        return nodes, gone

    def destroy_unrecorded(self, instance_id: str) -> bool:
        found = self._project_ids_named(f"{PROJECT_PREFIX}{instance_id}")
        for project_id in found:
            logger.warning("deleting Railway project %s of %s, which services never recorded", project_id, instance_id)
            self._delete_project(project_id)
        return bool(found)

    def list_owned(self) -> list[OwnedResource]:
        """Projects of the workspace named PROJECT_PREFIX + an instance id, and only those: any
        other project of the workspace is not the pool's and is never listed (so never deleted)."""
        owned = []
        for node in self._projects(docs.WORKSPACE_PROJECT_NAMES):
            instance_id = owned_instance_id(str(node.get("name") or ""), PROJECT_PREFIX)
            if instance_id and node.get("id"):
                owned.append(OwnedResource(resource_id=str(node["id"]), name=str(node["name"]), instance_id=instance_id,
                                           created_at=parse_datetime(str(node.get("createdAt") or ""))))
        return owned

    def destroy_owned(self, resource: OwnedResource) -> None:
        logger.warning("deleting Railway project %s (%s), which no instance row records", resource.resource_id, resource.name)
        self._delete_project(resource.resource_id)

    def redeploy(self, ref: InfraRef) -> InfraRef:
        self._require_service(ref)
        deployment_id = self._deploy(ref.railway_service_id, ref.railway_environment_id)
        return replace(ref, provider_state={**ref.provider_state, "deployment_id": deployment_id})

    # --- creation steps --------------------------------------------------------------------------
    def _build(self, instance_id: str, project_id: str, project: dict[str, Any], variables: dict[str, str]) -> InfraRef:
        environment_id = self._environment(project_id, project)
        where = {"projectId": project_id, "environmentId": environment_id}
        service = _field(
            self.client.execute(docs.SERVICE_CREATE, {"input": {**where, "name": SERVICE_NAME, "variables": dict(variables)}}),
            "serviceCreate",
        )
        service_id = str(_field(service, "id"))
        ids = {"serviceId": service_id, "environmentId": environment_id}
        self.client.execute(docs.VOLUME_CREATE, {"input": {**where, "serviceId": service_id, "mountPath": VOLUME_MOUNT_PATH}})
        domain = str(_field(_field(self.client.execute(docs.SERVICE_DOMAIN_CREATE, {"input": ids}), "serviceDomainCreate"), "domain"))
        limits = {k: v for k, v in (("vCPUs", self.vcpus), ("memoryGB", self.memory_gb)) if v}
        if limits:
            self.client.execute(docs.SERVICE_INSTANCE_LIMITS_UPDATE, {"input": {**ids, **limits}})
        # Last configuration step: from here on the service has something to run.
        source: dict[str, Any] = {"source": {"image": self.image}}
        if self.start_command:
            source["startCommand"] = self.start_command
        if self.registry_username and self.registry_password:
            source["registryCredentials"] = {"username": self.registry_username, "password": self.registry_password}
        self.client.execute(docs.SERVICE_INSTANCE_UPDATE, {**ids, "input": source})
        deployment_id = self._deploy(service_id, environment_id)
        logger.info("Railway instance %s created (project %s, deployment %s)", instance_id, project_id, deployment_id)
        return InfraRef(
            instance_id=instance_id,
            url=self.url_template.format(domain=domain),
            railway_project_id=project_id,
            railway_service_id=service_id,
            railway_environment_id=environment_id,
            image_tag=self.image,
            provider_state={"domain": domain, "deployment_id": deployment_id},
        )

    def _environment(self, project_id: str, project: dict[str, Any]) -> str:
        """The id of the project's environment named `environment_name`, made so if needed."""
        environments = [e.get("node") or {} for e in _edges(project.get("environments"))]
        for env in environments:
            if env.get("name") == self.environment_name:
                return str(env["id"])
        if environments:
            # Renaming the default environment rather than adding a second one: serviceCreate and
            # serviceInstanceUpdate apply to every non-fork environment of the project, and a
            # second environment would get a copy of the service with the image but no variables.
            answer = self.client.execute(docs.ENVIRONMENT_RENAME, {"id": str(environments[0]["id"]), "input": {"name": self.environment_name}})
            return str(_field(_field(answer, "environmentRename"), "id"))
        answer = self.client.execute(docs.ENVIRONMENT_CREATE, {"input": {"projectId": project_id, "name": self.environment_name}})
        return str(_field(_field(answer, "environmentCreate"), "id"))

    def _deploy(self, service_id: str, environment_id: str) -> str:
        answer = self.client.execute(docs.SERVICE_INSTANCE_DEPLOY, {"serviceId": service_id, "environmentId": environment_id})
        return str(_field(answer, "serviceInstanceDeployV2"))

    # --- helpers ---------------------------------------------------------------------------------
    def _delete_project(self, project_id: str) -> None:
        """projectDelete; the client retries transient failures with back-off. Missing is done."""
        try:
            self.client.execute(docs.PROJECT_DELETE, {"id": project_id})
        except RailwayError as exc:
            if exc.not_found:
                logger.info("Railway project %s was already gone", project_id)
                return
            # Railway answers "Not Authorized" for a project id that no longer exists, and also for
            # a token that lacks access: only a workspace listing without the project settles it.
            if _NOT_AUTHORIZED.search(exc.message) and project_id not in {str(n.get("id")) for n in self._projects(docs.WORKSPACE_PROJECT_NAMES)}:
                logger.info("Railway project %s was already gone (Not Authorized, and not in the workspace)", project_id)
                return
            raise

    def _project_ids_named(self, name: str) -> list[str]:
        return [str(node["id"]) for node in self._projects(docs.WORKSPACE_PROJECT_NAMES) if node.get("name") == name]

    def _delete_projects_named(self, name: str) -> None:
        """Delete every project called `name` (a projectCreate may have succeeded unseen)."""
        try:
            found = self._project_ids_named(name)
            for project_id in found:
                logger.warning("deleting Railway project %s (%s) whose creation answer was lost", project_id, name)
                self._delete_project(project_id)
        except ProviderError as exc:
            logger.error("could not check for a lost Railway project %s: %s", name, exc.message)

    def _projects(self, document: str, stop=lambda: False):
        """Yield every project node of the workspace, one page per call, until `stop()`."""
        after: str | None = None
        for _ in range(MAX_PAGES):
            answer = self.client.execute(document, {"workspaceId": self.workspace_id, "first": self.page_size, "after": after})
            page = _field(answer, "projects")
            for edge in _edges(page):
                yield edge.get("node") or {}
            info = page.get("pageInfo") or {}
            cursor = info.get("endCursor")
            if stop() or not info.get("hasNextPage"):
                return
            if not cursor or cursor == after:
                raise ProviderError("Railway projects listing did not advance (no new endCursor)")
            after = cursor
        raise ProviderError(f"Railway projects listing exceeded {MAX_PAGES} pages")

    def _state(self, ref: InfraRef, instances: list[dict[str, Any]]) -> DeployState:
        for si in instances:
            if ref.railway_service_id and si.get("serviceId") != ref.railway_service_id:
                continue
            if ref.railway_environment_id and si.get("environmentId") != ref.railway_environment_id:
                continue
            deployment = si.get("latestDeployment") or {}
            domains = ((si.get("domains") or {}).get("serviceDomains")) or []
            url = self.url_template.format(domain=domains[0]["domain"]) if domains and domains[0].get("domain") else ref.url
            return DeployState(deploy_status=deployment.get("status"), url=url)
        return DeployState(deploy_status="REMOVED", url=ref.url)  # the project is there, its service is not

    @staticmethod
    def _require_service(ref: InfraRef) -> None:
        if not (ref.railway_project_id and ref.railway_service_id and ref.railway_environment_id):
            raise ProviderError(f"Instance {ref.instance_id} has no Railway project/service/environment ids", permanent=True)


_NOT_AUTHORIZED = re.compile(r"not authori[sz]ed", re.I)


def _field(data: Any, name: str) -> Any:
    if not isinstance(data, dict) or data.get(name) is None:
        # The call went through but its answer is unusable: what it did is unknown.
        raise RailwayError(f"Railway answer lacks {name!r}", maybe_applied=True)
    return data[name]


def _service_instances(project: dict[str, Any]) -> list[dict[str, Any]]:
    """Every service instance of a project node (ProjectDeployState), across its environments."""
    return [si.get("node") or {} for env in _edges(project.get("environments"))
            for si in _edges((env.get("node") or {}).get("serviceInstances"))]


def _edges(connection: Any) -> list[dict[str, Any]]:
    return [e for e in ((connection or {}).get("edges") or []) if isinstance(e, dict)]


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, ProviderError) else exc.__class__.__name__
