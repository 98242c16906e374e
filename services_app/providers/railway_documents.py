"""Every GraphQL document the Railway provider sends, as named operations.

tests/services_app/test_railway_documents.py validates each one against Railway's introspection
schema (contracts/railway/schema.json), so a misspelt field or input fails the suite, not a
creation in production. Keep every document in ALL_DOCUMENTS.
"""
from __future__ import annotations

# `defaultEnvironmentName` names the environment projectCreate makes, so one call usually gives
# the project AND the environment the pool wants; the environments come back in the same answer.
PROJECT_CREATE = """
mutation ProjectCreate($input: ProjectCreateInput!) {
  projectCreate(input: $input) {
    id
    name
    environments {
      edges { node { id name } }
    }
  }
}
"""

PROJECT_DELETE = """
mutation ProjectDelete($id: String!) {
  projectDelete(id: $id)
}
"""

ENVIRONMENT_CREATE = """
mutation EnvironmentCreate($input: EnvironmentCreateInput!) {
  environmentCreate(input: $input) {
    id
    name
  }
}
"""

ENVIRONMENT_RENAME = """
mutation EnvironmentRename($id: String!, $input: EnvironmentRenameInput!) {
  environmentRename(id: $id, input: $input) {
    id
    name
  }
}
"""

# Sent WITHOUT `source`: a service with nothing to run cannot deploy, so its variables are in place
# long before anything boots.
SERVICE_CREATE = """
mutation ServiceCreate($input: ServiceCreateInput!) {
  serviceCreate(input: $input) {
    id
    name
  }
}
"""

VOLUME_CREATE = """
mutation VolumeCreate($input: VolumeCreateInput!) {
  volumeCreate(input: $input) {
    id
    name
  }
}
"""

SERVICE_DOMAIN_CREATE = """
mutation ServiceDomainCreate($input: ServiceDomainCreateInput!) {
  serviceDomainCreate(input: $input) {
    id
    domain
  }
}
"""

SERVICE_INSTANCE_LIMITS_UPDATE = """
mutation ServiceInstanceLimitsUpdate($input: ServiceInstanceLimitsUpdateInput!) {
  serviceInstanceLimitsUpdate(input: $input)
}
"""

# Attaches the image (with start command and registry credentials): the last configuration step.
SERVICE_INSTANCE_UPDATE = """
mutation ServiceInstanceUpdate($serviceId: String!, $environmentId: String, $input: ServiceInstanceUpdateInput!) {
  serviceInstanceUpdate(serviceId: $serviceId, environmentId: $environmentId, input: $input)
}
"""

# A new deployment from the service's current source: it resolves the image tag again (a moved
# `:production` tag is pulled), and unlike serviceInstanceRedeploy / deploymentRedeploy it needs
# no earlier deployment, so it serves both the first deploy and `redeploy`.
SERVICE_INSTANCE_DEPLOY = """
mutation ServiceInstanceDeploy($serviceId: String!, $environmentId: String!) {
  serviceInstanceDeployV2(serviceId: $serviceId, environmentId: $environmentId)
}
"""

# The fleet's deploy states, a page of projects per call. Service instances are read through
# `environments` (Service.serviceInstances is deprecated in the schema).
# What the status of one project reads, in the full sweep's pages and in the aliased lookups alike,
# so both answers go through one parser. A fragment keeps a 50-alias document small. (Lower-case
# name: ALL_DOCUMENTS lists complete documents only.)
_project_state_fragment = """
fragment ProjectDeployState on Project {
  id
  environments {
    edges {
      node {
        id
        serviceInstances {
          edges {
            node {
              serviceId
              environmentId
              latestDeployment { id status }
              domains { serviceDomains { domain } }
            }
          }
        }
      }
    }
  }
}
"""


WORKSPACE_PROJECTS = """
query WorkspaceProjects($workspaceId: String!, $first: Int!, $after: String) {
  projects(workspaceId: $workspaceId, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { ...ProjectDeployState } }
  }
}
""" + _project_state_fragment

# Light listing used to find a project whose projectCreate answer was lost (timeout, 5xx), and by
# the orphan sweep (`createdAt`: a project younger than ORPHAN_GRACE_MS may still be being recorded).
WORKSPACE_PROJECT_NAMES = """
query WorkspaceProjectNames($workspaceId: String!, $first: Int!, $after: String) {
  projects(workspaceId: $workspaceId, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { id name createdAt } }
  }
}
"""

def project_alias(index: int) -> str:
    """The alias (and variable name) of the `index`th project in a project_states_document."""
    return f"p{index}"


def project_states_document(count: int) -> str:
    """One query reading `count` projects by id (`p0: project(id: $p0) { ... }`, ...). A call asks
    about exactly the projects it names, so a fleet's few doubtful instances cost one call per
    `count` of them instead of a listing of the whole workspace."""
    if count < 1:
        raise ValueError("at least one project")
    aliases = [project_alias(i) for i in range(count)]
    variables = ", ".join(f"${a}: String!" for a in aliases)
    fields = "\n".join(f"  {a}: project(id: ${a}) {{ ...ProjectDeployState }}" for a in aliases)
    return f"query ProjectDeployStates({variables}) {{\n{fields}\n}}\n{_project_state_fragment}"


ALL_DOCUMENTS: tuple[str, ...] = (
    PROJECT_CREATE,
    PROJECT_DELETE,
    ENVIRONMENT_CREATE,
    ENVIRONMENT_RENAME,
    SERVICE_CREATE,
    VOLUME_CREATE,
    SERVICE_DOMAIN_CREATE,
    SERVICE_INSTANCE_LIMITS_UPDATE,
    SERVICE_INSTANCE_UPDATE,
    SERVICE_INSTANCE_DEPLOY,
    WORKSPACE_PROJECTS,
    WORKSPACE_PROJECT_NAMES,
)
