"""Checks that the Dockerfile, .dockerignore and supervisord.conf agree."""

import configparser
import fnmatch
import re
import shlex

import pytest

from .conftest import REPO_DIR

DOCKERFILE = REPO_DIR / "Dockerfile"
SUPERVISORD_CONF = REPO_DIR / "supervisord.conf"
IMAGE_HOME = "/opt/llmtap"
# Programs the appliance cannot work without; migration jobs come on top.
SERVICES = {"postgres", "postgrest", "nginx", "proxy", "web"}
# app.boot sets LLMTAP_APP_USER to llmtap when that user can read the code, as
# it can in the image; test_image checks the users of the running programs.
USER_VARIABLES = {"%(ENV_LLMTAP_APP_USER)s": "llmtap"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return (instruction, arguments) pairs with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def copied_sources() -> list[str]:
    """Return the build-context paths of every COPY without --from."""
    sources = []
    for keyword, arguments in dockerfile_instructions():
        words = shlex.split(arguments)
        if keyword != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def dockerignore_allows(path: str) -> bool:
    """Apply .dockerignore's patterns in order; the last match decides.

    As in Docker, a pattern that matches a parent directory matches the path too.
    """
    parts = path.rstrip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    allowed = True
    for pattern in (REPO_DIR / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            allowed = negated
    return allowed


def supervisor_programs() -> dict[str, configparser.SectionProxy]:
    parser = configparser.RawConfigParser()
    parser.read(SUPERVISORD_CONF)
    return {
        section.removeprefix("program:"): parser[section]
        for section in parser.sections()
        if section.startswith("program:")
    }


def image_users() -> set[str]:
    users = {"root"}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "RUN":
            users.update(
                re.findall(r"useradd [^&]*?\s([a-z_][a-z0-9_-]*)\s*(?:&&|$)", arguments)
            )
    return users


@pytest.fixture(scope="module")
def programs() -> dict[str, configparser.SectionProxy]:
    if not SUPERVISORD_CONF.exists():
        pytest.fail(
            f"{SUPERVISORD_CONF} is missing; the image starts supervisord with it"
        )
    return supervisor_programs()


def test_copied_paths_exist() -> None:
    sources = copied_sources()

    assert sources, "the Dockerfile copies nothing from the build context"
    for source in sources:
        assert (REPO_DIR / source).exists(), f"COPY {source}: no such path in the repo"


def test_copied_paths_pass_dockerignore() -> None:
    for source in copied_sources():
        assert dockerignore_allows(source), (
            f"COPY {source} is excluded by .dockerignore"
        )


def test_supervisord_runs_every_service(
    programs: dict[str, configparser.SectionProxy],
) -> None:
    missing = SERVICES - programs.keys()

    assert not missing, f"supervisord.conf has no [program:] for {sorted(missing)}"


def test_program_users_exist_in_image(
    programs: dict[str, configparser.SectionProxy],
) -> None:
    users = image_users()

    for name, program in programs.items():
        user = program.get("user", "root")
        user = USER_VARIABLES.get(user, user)
        assert user in users, (
            f"program {name} runs as {user}, which the image never creates"
        )


def test_python_programs_exist(programs: dict[str, configparser.SectionProxy]) -> None:
    for name, program in programs.items():
        module = re.search(r"\s-m\s+([\w.]+)", program["command"])
        if module is None:
            continue
        path = REPO_DIR / module.group(1).replace(".", "/")
        found = path.with_suffix(".py").exists() or (path / "__main__.py").exists()
        assert found, f"program {name} runs {module.group(1)}, which is not in the repo"


def test_program_directories_are_the_image_home(
    programs: dict[str, configparser.SectionProxy],
) -> None:
    env = dict(
        re.findall(r"(LLMTAP_\w+)=(\S+)", dict(dockerfile_instructions())["ENV"])
    )

    assert env["LLMTAP_HOME"] == IMAGE_HOME
    for name, program in programs.items():
        directory = program.get("directory", "%(ENV_LLMTAP_HOME)s")
        assert directory == "%(ENV_LLMTAP_HOME)s", f"program {name} runs in {directory}"


def test_boot_sets_every_supervisord_variable() -> None:
    variables = set(re.findall(r"%\(ENV_(\w+)\)s", SUPERVISORD_CONF.read_text()))
    boot = (REPO_DIR / "app" / "boot.py").read_text()
    env_line = dict(dockerfile_instructions())["ENV"]

    for variable in variables:
        assert variable in boot or f"{variable}=" in env_line, (
            f"supervisord.conf reads {variable}, which neither app/boot.py nor the "
            "Dockerfile sets"
        )


def test_entry_command_and_links_exist() -> None:
    instructions = dict(dockerfile_instructions())
    links = re.findall(
        rf"ln -s {IMAGE_HOME}/(\S+)",
        " ".join(
            arguments
            for keyword, arguments in dockerfile_instructions()
            if keyword == "RUN"
        ),
    )

    assert '"-m", "app.boot"' in instructions["CMD"]
    assert (REPO_DIR / "app" / "boot.py").exists()
    assert links, "the Dockerfile links no repo script onto PATH"
    for target in links:
        assert (REPO_DIR / target).exists(), (
            f"ln -s {IMAGE_HOME}/{target}: not in the repo"
        )
