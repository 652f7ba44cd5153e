"""deploy/Dockerfile, deploy/compose.yaml and their companions, checked without a container
runtime: the names, commands, paths and numbers they hold are the code's own."""

from __future__ import annotations

import configparser
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from tgrelay import cli
from tgrelay.app import TgrelayApp
from tgrelay.db.engine import POSTGRES_MAX_OVERFLOW
from tgrelay.inbox.writer import POSTGRES_LANES
from tgrelay.settings import Settings

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "tgrelay.env.example"
NGINX = DEPLOY / "nginx.conf"
API_COMMAND = ["serve", "--no-worker"]
WORKER_COMMAND = ["worker"]


@dataclass(frozen=True, kw_only=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV…
    arguments: str  # the rest, continuation lines joined


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per FROM; comments dropped, `\\` lines joined."""
    stages: list[list[Instruction]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        pending = ""
        instruction = Instruction(keyword=keyword.upper(), arguments=arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def runtime_stage() -> list[Instruction]:
    return dockerfile_stages()[-1]


def arguments(keyword: str, stage: list[Instruction] | None = None) -> list[str]:
    return [i.arguments for i in (stage or runtime_stage()) if i.keyword == keyword]


def image_environment() -> dict[str, str]:
    """The runtime stage's ENV, as `NAME=value` pairs (the form the Dockerfile uses)."""
    found: dict[str, str] = {}
    for line in arguments("ENV"):
        for pair in shlex.split(line):
            name, _, value = pair.partition("=")
            found[name] = value
    return found


def exec_form(keyword: str) -> list[str]:
    [line] = arguments(keyword)
    parsed = yaml.safe_load(line)  # a JSON array, which YAML reads too
    assert isinstance(parsed, list), f"{keyword} should use the exec form: {line}"
    return [str(part) for part in parsed]


def healthcheck_command() -> list[str]:
    """The image's HEALTHCHECK command, without its options."""
    [line] = arguments("HEALTHCHECK")
    command = line[line.index("CMD ") + len("CMD ") :]
    parsed = yaml.safe_load(command)
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # resolves the x- anchors' merge keys
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def tgrelay_services() -> dict[str, dict[str, Any]]:
    """The services that run the image built from deploy/Dockerfile."""
    return {
        name: service
        for name, service in services().items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def env_file(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes="#")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the names' case
    parser.read_string("[env]\n" + path.read_text())
    return dict(parser["env"])


def cli_accepts(argv: list[str]) -> None:
    """Fail unless `tgrelay` knows argv's command and options (asked for --help, so nothing runs).

    click parses every option before it answers --help: an unknown one is a usage error.
    """
    result = CliRunner().invoke(cli.app, [*argv, "--help"])
    assert result.exit_code == 0, (argv, result.output)


def settings_from(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a process with exactly these TGRELAY_* variables would build them."""
    for name in os.environ:
        if name.startswith("TGRELAY_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def setting_names(environment: dict[str, str]) -> set[str]:
    return {
        name.removeprefix("TGRELAY_").lower() for name in environment if name.startswith("TGRELAY_")
    }


@dataclass
class Recorder:
    paths: list[str]
    status: int


@pytest.fixture
def health_server() -> Iterator[tuple[int, Recorder]]:
    """A loopback HTTP server that records the paths asked and answers with `status`."""
    recorder = Recorder(paths=[], status=200)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.paths.append(self.path)
            self.send_response(recorder.status)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_check(command: list[str], port: int) -> int:
    """Run a healthcheck's `python3 -c …` with this interpreter, TGRELAY_PORT set to `port`."""
    assert command[0] == "python3", command
    environment = {**os.environ, "TGRELAY_PORT": str(port)}
    return subprocess.run([sys.executable, *command[1:]], env=environment, check=False).returncode


# The image.


def test_the_image_runs_as_the_unprivileged_user_it_creates() -> None:
    """The last USER is `tgrelay`, made with a fixed uid other than 0 in the same stage."""
    assert arguments("USER") == ["tgrelay"]
    [made] = [
        command
        for line in arguments("RUN")
        for command in line.split("&&")
        if command.split()[0] == "useradd"
    ]
    uid = re.search(r"--uid (\d+)", made)
    assert uid is not None, made
    assert int(uid.group(1)) != 0
    assert made.split()[-1] == "tgrelay"


def test_the_default_command_is_tgrelay_serve() -> None:
    """ENTRYPOINT is the project's console script and CMD `serve`, a command the CLI knows."""
    assert exec_form("ENTRYPOINT") == ["tgrelay"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'tgrelay = "tgrelay.cli:main"' in pyproject
    assert exec_form("CMD") == ["serve"]
    cli_accepts(exec_form("CMD"))


def test_the_checker_refuses_an_unknown_command_or_option() -> None:
    """The CLI check itself: a typo in a command or an option fails it."""
    cli_accepts(API_COMMAND)
    with pytest.raises(AssertionError, match="No such option"):
        cli_accepts(["serve", "--no-workers"])
    with pytest.raises(AssertionError, match="No such command"):
        cli_accepts(["workers"])


def test_the_image_environment_is_settings_tgrelay_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each TGRELAY_* ENV is a Settings field; together they bind 0.0.0.0 on the exposed port, data in the volume."""
    environment = image_environment()
    names = setting_names(environment)
    assert names <= set(Settings.model_fields), names - set(Settings.model_fields)
    settings = settings_from(
        {k: v for k, v in environment.items() if k.startswith("TGRELAY_")}, monkeypatch
    )
    assert (settings.host, settings.data_dir) == ("0.0.0.0", Path("/data"))
    assert arguments("EXPOSE") == [str(settings.port)]
    assert [yaml.safe_load(line) for line in arguments("VOLUME")] == [[str(settings.data_dir)]]
    assert arguments("WORKDIR") == [str(settings.data_dir)]


def test_the_image_healthcheck_asks_healthz_on_tgrelay_port(
    health_server: tuple[int, Recorder],
) -> None:
    """The HEALTHCHECK's command, run here, asks /healthz at TGRELAY_PORT and fails on an error status."""
    port, recorder = health_server
    command = healthcheck_command()
    assert run_check(command, port) == 0
    recorder.status = 503
    assert run_check(command, port) != 0
    assert recorder.paths == ["/healthz", "/healthz"]


async def test_the_app_answers_the_paths_the_healthchecks_ask(tmp_path: Path) -> None:
    """/healthz answers 200 with no database open yet; /readyz exists (503 until the runtime is up)."""
    settings = Settings(_env_file=None, data_dir=tmp_path)
    app = TgrelayApp(settings).api  # no lifespan: nothing is started
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tgrelay"
    ) as client:
        healthz = await client.get("/healthz")
        readyz = await client.get("/readyz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    assert (readyz.status_code, readyz.json()) == (503, {"status": "unavailable"})


def test_the_build_copies_what_the_dockerignore_lets_through() -> None:
    """Each COPY from the context names a path in the repository that the ignore file keeps."""
    [build, _runtime] = dockerfile_stages()
    copied = [
        source
        for line in arguments("COPY", build)
        if not line.startswith("--from")
        for source in line.split()[:-1]
    ]
    assert copied == ["pyproject.toml", "uv.lock", "README.md", "src"]
    kept = {
        line.removeprefix("!").rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert "*" in DOCKERIGNORE.read_text().splitlines()
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source in kept, source


def test_the_build_installs_the_locked_versions_with_the_wheel() -> None:
    """The build stage exports uv.lock (frozen, hashes required) and installs tgrelay's own wheel."""
    [build, _runtime] = dockerfile_stages()
    [install] = [line for line in arguments("RUN", build) if "uv build" in line]
    assert "uv export --frozen --no-dev" in install
    assert "--require-hashes" in install
    assert "--no-deps /dist/tgrelay-*.whl" in install


def find_uv() -> str | None:
    return shutil.which("uv") or next(
        (str(p) for p in [ROOT / ".tools" / "uv" / "bin" / "uv"] if p.exists()), None
    )


def test_the_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    """`uv build` (as the image's build runs it) packs every file under src/tgrelay: templates, static files, migrations."""
    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed (scripts/bootstrap installs it into .tools/uv)")
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path), "--quiet", str(ROOT)], check=True
    )
    [wheel] = tmp_path.glob("tgrelay-*.whl")
    packed = {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}
    source = ROOT / "src"
    expected = {
        path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert packed == expected, (expected - packed, packed - expected)
    assert {
        "tgrelay/db/migrations/script.py.mako",
        "tgrelay/ui/static/ui.css",
        "tgrelay/ui/templates/base.html",
    } <= packed


# The compose file.


def test_compose_runs_two_apis_and_two_workers_beside_migrate() -> None:
    """Two `serve --no-worker`, two `worker` and one `migrate`, all from the Dockerfile's image."""
    commands = sorted(service["command"] for service in tgrelay_services().values())
    assert commands == sorted(
        [API_COMMAND, API_COMMAND, WORKER_COMMAND, WORKER_COMMAND, ["migrate"]]
    )
    for command in commands:
        cli_accepts(command)
    assert {"postgres", "redis"} <= set(services())


def test_compose_environment_names_are_settings_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every TGRELAY_* in compose.yaml and the env example is a Settings field, and together they make cluster settings."""
    example = env_file(ENV_EXAMPLE)
    for name, service in tgrelay_services().items():
        environment = {k: str(v) for k, v in service.get("environment", {}).items()}
        fields = setting_names(environment) | setting_names(example)
        assert fields <= set(Settings.model_fields), (name, fields - set(Settings.model_fields))
        assert service["env_file"] == [ENV_EXAMPLE.name.removesuffix(".example")]
        filled = {**example, "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(), **environment}
        settings = settings_from(
            {k: v for k, v in filled.items() if k.startswith("TGRELAY_")}, monkeypatch
        )
        assert not settings.is_sqlite
        assert settings.redis_url is not None
        assert len(settings.secret_keys) == 1


def test_compose_points_tgrelay_at_its_postgres_and_redis() -> None:
    """The database URL's host, user, password and database are the postgres service's; Redis's host is the redis service."""
    example = env_file(ENV_EXAMPLE)
    database = urlsplit(example["TGRELAY_DATABASE_URL"])
    postgres = services()["postgres"]
    assert postgres["env_file"] == [ENV_EXAMPLE.name.removesuffix(".example")]
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == postgres["environment"]["POSTGRES_USER"]
    assert database.password == example["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres["environment"]["POSTGRES_DB"]
    for service in tgrelay_services().values():
        assert urlsplit(service["environment"]["TGRELAY_REDIS_URL"]).hostname == "redis"


def test_postgres_allows_the_connections_every_process_may_open() -> None:
    """max_connections covers 4 processes' pools at their default size plus overflow, the
    APIs' intake connections (one per lane), and a migrate."""
    command = services()["postgres"]["command"]
    [setting] = [part for part in command if part.startswith("max_connections=")]
    allowed = int(setting.partition("=")[2])
    per_process = Settings(_env_file=None).resolved_database_pool_size + POSTGRES_MAX_OVERFLOW
    apis = [s for s in tgrelay_services().values() if s.get("command", [None])[0] == "serve"]
    assert len(apis) == 2
    assert allowed >= len(tgrelay_services()) * per_process + len(apis) * POSTGRES_LANES


def test_every_dependency_waits_on_a_condition_that_can_be_met() -> None:
    """Each depends_on names a condition; service_healthy only on a service with a live healthcheck, service_completed_successfully only on a one-shot."""
    all_services = services()
    for name, service in all_services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in all_services, (name, target)
            wanted = condition["condition"]
            other = all_services[target]
            if wanted == "service_healthy":
                test = other.get("healthcheck", {}).get("test")
                if test is None:  # the image's own HEALTHCHECK
                    assert target in tgrelay_services(), (name, target)
                else:
                    assert test[0] in ("CMD", "CMD-SHELL"), (name, target)
            else:
                assert wanted == "service_completed_successfully", (name, target)
                assert other["restart"] == "no", (name, target)
    for name, service in tgrelay_services().items():
        if service["command"] != ["migrate"]:
            assert service["depends_on"] == {
                "migrate": {"condition": "service_completed_successfully"},
                "postgres": {"condition": "service_healthy"},
                "redis": {"condition": "service_healthy"},
            }, name


def test_apis_keep_the_image_healthcheck_and_the_rest_switch_it_off() -> None:
    """APIs are healthy by the image's /healthz check; workers and migrate, which serve no HTTP, have it off."""
    for name, service in tgrelay_services().items():
        if service["command"] == API_COMMAND:
            assert "healthcheck" not in service, name
        else:
            assert service["healthcheck"] == {"test": ["NONE"]}, name


def test_nginx_balances_over_the_api_services() -> None:
    """nginx's upstream lists exactly the API services at tgrelay's port; compose mounts that file."""
    settings = Settings(_env_file=None)
    upstream = re.findall(r"^\s*server (\S+):(\d+)", NGINX.read_text(), flags=re.MULTILINE)
    apis = sorted(
        name for name, service in tgrelay_services().items() if service["command"] == API_COMMAND
    )
    assert sorted(upstream) == [(name, str(settings.port)) for name in apis]
    nginx = services()["nginx"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert set(nginx["depends_on"]) == set(apis)
