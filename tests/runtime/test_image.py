"""The runtime image (runtime/Dockerfile) and its CI workflow, checked without a Docker engine.

- hadolint lints the Dockerfile and check-jsonschema validates the workflow (both pinned in
  requirements.txt);
- the Dockerfile and the workflow are parsed and their promises asserted (non-root user,
  health check, volume, the CLI version argument, pinned bases; triggers, tags, cache);
- the image's Python environment is rebuilt the way the Dockerfile builds it (a venv of this
  Python with runtime/requirements.txt, runtime/ copied as the build context holds it), and the
  entrypoint is run in it against a scratch data directory, as a non-root user, and as root when
  the suite runs as root (then it must hand the directory over and drop privileges);
- the HEALTHCHECK command is run against a stub and against the real runtime started through
  the entrypoint.

No database is used.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "runtime"
DOCKERFILE = RUNTIME / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENTRYPOINT = RUNTIME / "scripts" / "entrypoint.sh"
WORKFLOW_PATH = ".github/workflows/build-runtime.yml"
WORKFLOW = REPO / WORKFLOW_PATH
PYTHON_MM = f"{sys.version_info.major}.{sys.version_info.minor}"

# Where the Dockerfile puts things (asserted below, used by the emulation).
IMAGE_WORKDIR = "/app"
IMAGE_ENTRYPOINT = "/app/runtime/scripts/entrypoint.sh"
DATA_SUBDIRS = {"state": 0o750, "convos": 0o750, "convos/cli": 0o700, "workspace": 0o750, "history": 0o750, "credentials": 0o700}

# Values that must never reach the entrypoint's output.
SECRETS = {
    "GATEWAY_TOKEN": f"secret-marker-{uuid.uuid4().hex}",
    "OPENAI_API_KEY": f"secret-marker-{uuid.uuid4().hex}",
    "XMTP_WALLET_KEY": f"secret-marker-{uuid.uuid4().hex}",
    "RAILWAY_API_TOKEN": f"secret-marker-{uuid.uuid4().hex}",
}

NOBODY = 65534
IS_ROOT = os.geteuid() == 0
# Run as root (as on this project's machines), the "non-root" runs switch to uid 65534 first. The
# interpreter may live under a private home (pyenv in /root, mode 0700), so that uid keeps only
# CAP_DAC_READ_SEARCH, as an ambient capability: it can read and traverse, but every write is
# still checked against uid 65534, and its id is what the entrypoint sees.
AS_NON_ROOT = (
    [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    if IS_ROOT
    else []
)


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    value: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (as Docker reads them)."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank and comment lines, also inside a continuation
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, value = " ".join(p for p in parts if p).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), value.strip()))
        parts = []
    assert not parts, "the Dockerfile ends inside a line continuation"
    return instructions


def stages(instructions: list[Instruction]) -> tuple[list[Instruction], list[list[Instruction]]]:
    """(instructions before the first FROM, one list per stage starting with its FROM)."""
    head: list[Instruction] = []
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([instruction])
        elif result:
            result[-1].append(instruction)
        else:
            head.append(instruction)
    return head, result


def env_pairs(value: str) -> dict[str, str]:
    """ENV a=b c=d (the key=value form; the legacy `ENV a b` form is not used here)."""
    pairs = {}
    for token in shlex.split(value):
        assert "=" in token, f"ENV uses the legacy form: {value!r}"
        key, _, val = token.partition("=")
        pairs[key] = val
    return pairs


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed), value
    return parsed


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    return stages(dockerfile)[1][-1]


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def find_tool(name: str) -> str:
    """The console script next to this interpreter (.venv/bin), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `make install` (requirements.txt pins it)")
    return found


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: not pinned exactly: {line!r}"
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for name, value in SECRETS.items():
            assert value not in output, f"the value of {name} was printed"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- (a) hadolint ----------------------------------------------------------------------------


def test_it_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    # A private HOME/XDG_CONFIG_HOME: no user-level hadolint config can relax the rules.
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [find_tool("hadolint"), "--no-color", "--failure-threshold", "info", "runtime/Dockerfile"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_it_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=", line):
            previous = lines[index - 1].strip() if index else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"line {index + 1}: a hadolint ignore needs a comment line above saying why"
            )


# --- (d) the Dockerfile's promises -------------------------------------------------------------


def test_it_base_images_are_pinned(dockerfile: list[Instruction]) -> None:
    _, all_stages = stages(dockerfile)
    aliases: set[str] = set()
    bases: dict[str, str] = {}
    for stage in all_stages:
        words = stage[0].value.split()
        words = [w for w in words if not w.startswith("--platform")]
        image = words[0]
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2].lower())
        if image.lower() in aliases - {words[-1].lower()}:
            continue  # FROM <earlier stage>
        assert "$" not in image, f"line {stage[0].line}: base image from a build argument"
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag, f"line {stage[0].line}: {image} has no tag"
        assert tag != "latest", f"line {stage[0].line}: {image} is not pinned"
        bases[name] = tag
    assert set(bases) == {"python", "node"}, bases
    # The Python of this suite, in its slim Debian variant.
    assert bases["python"].startswith(f"{PYTHON_MM}-") and "slim" in bases["python"], bases
    # Node by major (the convos CLI requires node >= 22), on the same Debian release as Python.
    node_major = bases["node"].split("-", 1)[0]
    assert node_major.isdigit() and int(node_major) >= 22, bases
    # Trixie: the CLI's XMTP native binding needs glibc >= 2.38 (bookworm has 2.36; CONVOS_CLI.md §10).
    assert bases["python"].split("-")[-1] == bases["node"].split("-")[-2] == "trixie", bases


def test_it_runs_as_a_non_root_user(final_stage: list[Instruction]) -> None:
    users = [i for i in final_stage if i.keyword == "USER"]
    assert users, "no USER in the final stage: the container would run as root"
    user, _, group = users[-1].value.partition(":")
    assert user not in {"root", "0"} and group not in {"root", "0"}, users[-1]
    if user.isdigit():  # numeric (hadolint DL3066): the user must exist with that id
        runs = " ".join(i.value for i in final_stage if i.keyword == "RUN")
        assert re.search(rf"useradd\b[^&;]*--uid {user}\b", runs), f"no useradd --uid {user}"
    # Nothing after USER runs as root by accident (RUN after USER runs as that user anyway).
    assert final_stage.index(users[-1]) > max(
        i for i, ins in enumerate(final_stage) if ins.keyword in {"RUN", "COPY"}
    )


def test_it_healthcheck_calls_pool_health_with_python(final_stage: list[Instruction]) -> None:
    checks = [i for i in final_stage if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    command = healthcheck_command(checks[0])
    assert command[0] == "python", command
    assert "/pool/health" in " ".join(command)
    assert not any(tool in checks[0].value for tool in ("curl", "wget")), checks[0]


def healthcheck_command(instruction: Instruction) -> list[str]:
    _, sep, command = instruction.value.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {instruction.value!r}"
    return exec_form(command.strip())


def test_it_volume_env_port_and_commands(final_stage: list[Instruction]) -> None:
    volumes = [v for i in final_stage if i.keyword == "VOLUME" for v in exec_form(i.value)]
    assert volumes == ["/data"]
    env: dict[str, str] = {}
    for instruction in final_stage:
        if instruction.keyword == "ENV":
            env.update(env_pairs(instruction.value))
    assert {k: env.get(k) for k in ("RUNTIME_CHANNEL", "PORT", "RUNTIME_DATA_DIR")} == {
        "RUNTIME_CHANNEL": "convos", "PORT": "8080", "RUNTIME_DATA_DIR": "/data",
    }
    assert [i.value for i in final_stage if i.keyword == "EXPOSE"] == ["8080"]
    assert [i.value for i in final_stage if i.keyword == "WORKDIR"] == [IMAGE_WORKDIR]
    (entrypoint,) = [exec_form(i.value) for i in final_stage if i.keyword == "ENTRYPOINT"]
    (cmd,) = [exec_form(i.value) for i in final_stage if i.keyword == "CMD"]
    assert entrypoint == [IMAGE_ENTRYPOINT]
    assert cmd == ["python", "-m", "runtime"]
    # The entrypoint the image runs is the repository's, executable (COPY keeps the mode).
    assert ENTRYPOINT.is_file() and os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")


def test_it_convos_cli_version_is_one_build_argument(dockerfile: list[Instruction], final_stage: list[Instruction]) -> None:
    head, _ = stages(dockerfile)
    lines = [line for line in DOCKERFILE.read_text().splitlines() if re.match(r"\s*ARG\s+CONVOS_CLI_VERSION\b", line)]
    with_default = [line for line in lines if "=" in line]
    assert len(with_default) == 1, f"one ARG line holds the CLI version, found {with_default}"
    # Pinned to the release the channel was verified against (runtime/CONVOS_CLI.md), exactly.
    pinned = re.search(r"\*\*`@xmtp/convos-cli@(\d+\.\d+\.\d+)`\*\*", (DOCKERFILE.parent / "CONVOS_CLI.md").read_text()).group(1)
    assert with_default[0].strip() == f"ARG CONVOS_CLI_VERSION={pinned}"
    assert any(i.keyword == "ARG" and i.value.startswith("CONVOS_CLI_VERSION=") for i in head[:3]), (
        "the version ARG belongs near the top, before the first FROM"
    )
    # Declared before FROM, an ARG reaches a stage only when the stage declares it again.
    assert any(i.keyword == "ARG" and i.value == "CONVOS_CLI_VERSION" for i in final_stage)
    runs = [i.value for i in final_stage if i.keyword == "RUN"]
    assert any(
        "npm install" in run and '"@xmtp/convos-cli@${CONVOS_CLI_VERSION}"' in run and "--global" in run
        for run in runs
    ), runs
    # The build fails on a CLI whose native binding cannot load, not only on a missing binary.
    assert any("convos agent serve --image-smoke-check" in run and 'test "$rc" -eq 2' in run for run in runs), runs


def test_it_only_runtime_goes_into_the_image(final_stage: list[Instruction]) -> None:
    copies = [i for i in final_stage if i.keyword in {"COPY", "ADD"}]
    assert not [i for i in copies if i.keyword == "ADD"], "ADD: use COPY"
    for instruction in copies:
        words = instruction.value.split()
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        assert sources and all(s.startswith("runtime/") for s in sources), instruction
    runs = [i.value for i in final_stage if i.keyword == "RUN"]
    assert any("pip install --no-cache-dir -r runtime/requirements.txt" in run for run in runs), runs
    # The build context: everything out but runtime/, and no bytecode from local runs.
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert patterns[:2] == ["*", "!runtime/"], patterns
    assert "**/__pycache__" in patterns and "**/.env" in patterns, patterns


# --- runtime/requirements.txt ----------------------------------------------------------------


def test_it_runtime_requirements_match_the_repository_pins() -> None:
    runtime = read_pins(RUNTIME / "requirements.txt")
    repository = read_pins(REPO / "requirements.txt")
    assert set(runtime) == {"requests", "certifi", "charset-normalizer", "idna", "urllib3"}
    assert runtime == {name: repository[name] for name in runtime}


# --- (b) the workflow ------------------------------------------------------------------------


def test_it_workflow_matches_the_github_workflow_schema() -> None:
    result = subprocess.run(
        [find_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", WORKFLOW_PATH],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout, result.stdout


def test_it_workflow_triggers(workflow: dict) -> None:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(on) == {"push", "workflow_dispatch"}, on
    assert on["push"]["branches"] == ["main", "staging"]
    assert on["push"]["paths"] == ["runtime/**", ".github/workflows/build-runtime.yml"]
    assert workflow["permissions"] == {"contents": "read"}


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_it_workflow_test_job(workflow: dict) -> None:
    job = workflow["jobs"]["test"]
    assert steps_using(job, "actions/checkout")
    (setup,) = steps_using(job, "actions/setup-python")
    assert str(setup["with"]["python-version"]) == PYTHON_MM
    runs = [s.get("run", "") for s in job["steps"]]
    assert any("pip install -r requirements.txt" in run for run in runs), runs
    assert any(re.search(r"\bpytest\b.*\btests/runtime\b", run) for run in runs), runs


def test_it_workflow_build_job(workflow: dict, tmp_path: Path) -> None:
    job = workflow["jobs"]["build"]
    assert job["needs"] in ("test", ["test"])
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert steps_using(job, "actions/checkout")
    assert steps_using(job, "docker/setup-buildx-action")
    (login,) = steps_using(job, "docker/login-action")
    assert login["with"]["registry"] == "ghcr.io"
    assert login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"

    (meta,) = steps_using(job, "docker/metadata-action")
    assert meta["with"]["images"] == "${{ steps.image.outputs.name }}"
    tags = [t.strip() for t in meta["with"]["tags"].splitlines() if t.strip()]
    assert tags == ["type=ref,event=branch", "type=sha,prefix=sha-,format=short"]

    # The image name step, run as Actions runs it (bash), with an owner in mixed case.
    (image,) = [s for s in job["steps"] if s.get("id") == "image"]
    assert image["env"]["OWNER"] == "${{ github.repository_owner }}"
    output = tmp_path / "github_output"
    subprocess.run(
        ["bash", "-e", "-c", image["run"]],
        env={"PATH": os.environ["PATH"], "OWNER": "XmtpLabs", "GITHUB_OUTPUT": str(output)},
        check=True, timeout=10,
    )
    assert output.read_text().splitlines() == ["name=ghcr.io/xmtplabs/convos-runtime"]

    (build,) = steps_using(job, "docker/build-push-action")
    assert build["with"]["context"] == "."
    assert build["with"]["file"] == "runtime/Dockerfile"
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["with"]["cache-from"] == "type=gha"
    assert build["with"]["cache-to"] == "type=gha,mode=max"


def test_it_workflow_actions_are_pinned_by_major_version(workflow: dict) -> None:
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", action), action


# --- (c) the image's Python environment and the entrypoint -------------------------------------


@dataclass(frozen=True)
class Image:
    bin: Path  # the venv's bin/, first on PATH (the image's /usr/local/bin)
    app: Path  # the image's WORKDIR: holds runtime/
    env: dict[str, str]  # the Dockerfile's ENV


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, final_stage: list[Instruction]) -> Image:
    root = tmp_path_factory.mktemp("image")
    venv = root / "venv"
    # This Python, without site packages; pip (this suite's) installs into it what the
    # Dockerfile's `pip install --no-cache-dir -r runtime/requirements.txt` installs.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "--disable-pip-version-check"]
    installed = subprocess.run(
        [*pip, "install", "--no-cache-dir", "-r", str(RUNTIME / "requirements.txt")],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    # runtime/requirements.txt is complete: nothing is installed beyond what it pins.
    frozen = subprocess.run([*pip, "freeze"], capture_output=True, text=True, check=True, timeout=60)
    assert read_pins_text(frozen.stdout) == read_pins(RUNTIME / "requirements.txt")

    # COPY runtime/ runtime/ (WORKDIR /app), less what .dockerignore keeps out of the context.
    ignored = [
        line.strip()[3:] for line in DOCKERIGNORE.read_text().splitlines() if line.strip().startswith("**/")
    ]
    app = root / "app"
    shutil.copytree(RUNTIME, app / "runtime", ignore=shutil.ignore_patterns(*ignored))
    assert not list(app.rglob("__pycache__"))

    env: dict[str, str] = {}
    for instruction in final_stage:
        if instruction.keyword == "ENV":
            env.update(env_pairs(instruction.value))
    return Image(bin=venv / "bin", app=app, env=env)


def read_pins_text(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def image_env(image: Image, data_dir: Path, home: Path, **extra: str) -> dict[str, str]:
    """The container's environment: the Dockerfile's ENV, secrets, and a scratch data dir."""
    return {
        **image.env,
        "PATH": f"{image.bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **SECRETS,
        "RUNTIME_DATA_DIR": str(data_dir),
        **extra,
    }


def entrypoint(image: Image) -> str:
    return str(image.app / IMAGE_ENTRYPOINT.removeprefix(IMAGE_WORKDIR + "/"))


def owned_by_runner(path: Path) -> Path:
    """A directory the non-root run may write into."""
    path.mkdir(mode=0o755)
    if IS_ROOT:
        os.chown(path, NOBODY, NOBODY)
    return path


def assert_data_dir(data: Path, uid: int) -> None:
    assert data.is_dir()
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    for name, mode in DATA_SUBDIRS.items():
        info = (data / name).lstat()
        assert stat.S_ISDIR(info.st_mode), name
        assert stat.S_IMODE(info.st_mode) == mode, f"{name}: {oct(stat.S_IMODE(info.st_mode))}"
        assert info.st_uid == uid, f"{name} belongs to {info.st_uid}"


def test_it_entrypoint_prepares_the_data_dir_and_runs_the_command_as_non_root(image: Image, tmp_path: Path) -> None:
    volume = owned_by_runner(tmp_path / "volume")
    data = volume / "data"  # not there yet: the entrypoint creates it
    probe = (
        "import os, runtime, requests; "
        "print('ok', os.getuid(), runtime.__file__, requests.__file__, os.environ['RUNTIME_DATA_DIR'])"
    )
    result = subprocess.run(
        [*AS_NON_ROOT, entrypoint(image), "python", "-c", probe],
        cwd=image.app, env=image_env(image, data, volume), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    word, uid, runtime_file, requests_file, data_env = result.stdout.split()
    assert word == "ok" and int(uid) != 0
    assert Path(runtime_file).is_relative_to(image.app / "runtime")  # the copy, not the repository
    assert Path(requests_file).is_relative_to(image.bin.parent)  # the image's environment
    assert data_env == str(data)
    assert_data_dir(data, int(uid))
    assert_no_secret(result.stdout, result.stderr)
    assert result.stderr == ""  # the entrypoint says nothing when all is well


def test_it_entrypoint_falls_back_to_the_railway_volume(image: Image, tmp_path: Path) -> None:
    volume = owned_by_runner(tmp_path / "volume")
    env = image_env(image, volume, volume, RUNTIME_DATA_DIR="", RAILWAY_VOLUME_MOUNT_PATH=str(volume / "mnt"))
    result = subprocess.run(
        [*AS_NON_ROOT, entrypoint(image), "python", "-c", "import os; print(os.environ['RUNTIME_DATA_DIR'])"],
        cwd=image.app, env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(volume / "mnt")
    assert (volume / "mnt" / "credentials").is_dir()


def test_it_entrypoint_fails_on_an_unwritable_data_dir_without_printing_values(image: Image, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)  # root's when the suite runs as root: uid 65534 cannot write there
    locked.chmod(0o555)
    data = locked / "data"
    try:
        result = subprocess.run(
            [*AS_NON_ROOT, entrypoint(image), "python", "-c", "print('must not run')"],
            cwd=image.app, env=image_env(image, data, tmp_path), capture_output=True, text=True, timeout=30,
        )
    finally:
        locked.chmod(0o755)
    assert result.returncode != 0
    assert "must not run" not in result.stdout
    assert "data directory" in result.stderr
    assert str(locked) not in result.stdout + result.stderr  # names the variable, not its value
    assert_no_secret(result.stdout, result.stderr)


@pytest.mark.skipif(not IS_ROOT, reason="the root path needs root (the image starts as root only on request)")
def test_it_entrypoint_started_as_root_hands_the_volume_over_and_drops_privileges(image: Image, tmp_path: Path) -> None:
    data = tmp_path / "volume"
    data.mkdir()
    (data / "state").mkdir()  # left by an earlier root run
    (data / "state" / "old.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.write_text("root's")
    (data / "link").symlink_to(outside)  # planted in the volume: must not hand `outside` over
    env = image_env(image, data, tmp_path, RUNTIME_RUN_AS="nobody")
    result = subprocess.run(
        [entrypoint(image), "sh", "-c", "id -u; id -g; id -G; printf '%s\\n' \"$HOME\""],
        cwd=image.app, env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    uid, gid, groups, home = result.stdout.split("\n")[:4]
    assert (int(uid), int(gid), groups.split()) == (NOBODY, NOBODY, [str(NOBODY)])
    assert home == "/nonexistent"  # nobody's home, not root's
    assert_data_dir(data, NOBODY)
    assert (data / "state" / "old.json").stat().st_uid == NOBODY
    assert (data / "link").lstat().st_uid == NOBODY
    assert outside.stat().st_uid == 0
    assert_no_secret(result.stdout, result.stderr)

    refused = subprocess.run(
        [entrypoint(image), "true"], cwd=image.app, env={**env, "RUNTIME_RUN_AS": "root"},
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode != 0 and "RUNTIME_RUN_AS" in refused.stderr


def test_it_entrypoint_prints_no_environment(image: Image) -> None:
    text = ENTRYPOINT.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert re.search(r"^set -eu$", code, re.M)
    assert not re.search(r"set -[a-z]*x|\benv\b|\bprintenv\b|\bexport -p\b|\bset$", code, re.M)
    assert code.rstrip().endswith('exec "$@"')


# --- the HEALTHCHECK command -----------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(self.status if self.path == "/pool/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_stub() -> Iterator[type[_Health]]:
    handler = type("Health", (_Health,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.port = server.server_address[1]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_it_healthcheck_passes_on_200_and_fails_otherwise(image: Image, final_stage: list[Instruction], health_stub, tmp_path: Path) -> None:
    (check,) = [i for i in final_stage if i.keyword == "HEALTHCHECK"]
    command = healthcheck_command(check)
    env = image_env(image, tmp_path, tmp_path, PORT=str(health_stub.port))
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
    assert ran.returncode == 0, ran.stderr
    health_stub.status = 503  # booting, or not ready
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
    assert ran.returncode != 0


@pytest.mark.e2e
def test_it_healthcheck_passes_against_the_runtime_started_by_the_entrypoint(image: Image, final_stage: list[Instruction], tmp_path: Path) -> None:
    (check,) = [i for i in final_stage if i.keyword == "HEALTHCHECK"]
    command = healthcheck_command(check)
    (cmd,) = [exec_form(i.value) for i in final_stage if i.keyword == "CMD"]
    volume = owned_by_runner(tmp_path / "volume")
    # The loopback channel: the image's convos channel needs the convos CLI, which only the image has.
    env = image_env(image, volume / "data", volume, PORT=str(free_port()), RUNTIME_CHANNEL="loopback")
    process = subprocess.Popen(
        [*AS_NON_ROOT, entrypoint(image), *cmd], cwd=image.app, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, "the runtime exited"
            ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
            if ran.returncode == 0:
                break
            assert time.monotonic() < deadline, f"never healthy: {ran.stderr[-500:]}"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate(timeout=10)
    assert_no_secret(output)
    assert_data_dir(volume / "data", NOBODY if IS_ROOT else os.geteuid())
