"""Dockerfile and docker-compose.yml agree with the code: copied files, PSS_* variables, commands, ports."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.core.config import ENV_PREFIX, Config, load_config
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args) if args.startswith("[") else shlex.split(args)
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def our_services() -> dict[str, dict[str, Any]]:
    """Compose services built from this repository's Dockerfile."""
    return {name: svc for name, svc in compose()["services"].items() if svc.get("build") == "."}


def config_env_names() -> set[str]:
    names = {f"{ENV_PREFIX}CONFIG"}
    for section_name, section in Config().model_dump().items():
        names |= {f"{ENV_PREFIX}{section_name}_{key}".upper() for key in section}
    return names


def resolve_interpolation(value: str) -> str:
    """Compose's ${VAR-default} / ${VAR:-default}, taking the default (the variable is unset in a test)."""
    return re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", value)


def dockerignore_allows(path: str) -> bool:
    """Last matching .dockerignore pattern wins; enough for our top-level allow-list."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    sources = [part for args in instructions("COPY") for part in shlex.split(args)[:-1] if not part.startswith("--")]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert dockerignore_allows(source), f".dockerignore excludes {source}, which the Dockerfile copies"


def test_the_image_ships_the_service_without_the_toolbox() -> None:
    copied = {shlex.split(args)[0] for args in instructions("COPY")}
    assert {"pyproject.toml", "daemon", "web", "cql"} <= copied
    assert "bench" not in copied
    assert not dockerignore_allows("daemon/tools/node/manager.py"), "the node manager must stay out of the image"
    assert dockerignore_allows("daemon/core/config.py") and dockerignore_allows("daemon/cli/serve.py")


def test_the_cli_works_without_the_tools(tmp_path: Path) -> None:
    """What the image holds (service packages, no daemon/tools or bench) still runs its commands."""
    for package in ("daemon", "web", "cql"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "tools"))
    assert not (tmp_path / "daemon" / "tools").exists()
    # -S skips site-packages' editable install of this checkout, so only the copy is importable.
    site = [path for path in sys.path if path.endswith("site-packages")]
    environ = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *site]), "PATH": os.environ.get("PATH", "")}
    shown = subprocess.run(
        [sys.executable, "-S", "-m", "daemon", "--config", str(ROOT / "config.toml"), "schema", "show"],
        cwd=tmp_path, env=environ, capture_output=True, text=True, check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "CREATE TABLE IF NOT EXISTS" in shown.stdout
    helped = subprocess.run(
        [sys.executable, "-S", "-m", "daemon", "--help"], cwd=tmp_path, env=environ, capture_output=True, text=True,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    listed = set(re.findall(r"^    (\w+) ", helped.stdout, re.M))
    assert listed == {"serve", "schema", "rollups", "keys"}, "the image's CLI lists the service commands only"


def test_every_pss_variable_is_a_config_key_with_a_valid_value() -> None:
    dockerfile_env = dict(
        pair.split("=", 1) for args in instructions("ENV") for pair in shlex.split(args) if pair.startswith(ENV_PREFIX)
    )
    sources = {"Dockerfile": dockerfile_env} | {
        f"docker-compose.yml service {name}": svc.get("environment", {}) for name, svc in our_services().items()
    }
    known = config_env_names()
    for source, env in sources.items():
        assert isinstance(env, dict), f"{source}: write environment as a mapping"
        for name in env:
            assert name in known, f"{source}: {name} is not a config key"
        # Values must load: the container would otherwise stop at start with a config error.
        environ = {**dockerfile_env, **{name: resolve_interpolation(str(value)) for name, value in env.items()}}
        load_config(ROOT / "config.toml", environ=environ)


def test_container_commands_are_real_cli_commands() -> None:
    from daemon.cli.main import build_parser

    parser = build_parser()
    assert exec_form(instructions("ENTRYPOINT")[-1]) == ["python", "-m", "daemon"]
    commands = [exec_form(instructions("CMD")[-1])] + [svc["command"] for svc in our_services().values()]
    assert ["serve"] in commands and ["schema", "apply"] in commands
    for command in commands:
        try:
            parser.parse_args(command)
        except SystemExit:
            pytest.fail(f"`python -m daemon {' '.join(command)}` is not a valid command")


def test_ports_match_the_configured_server_port() -> None:
    port = load_config(ROOT / "config.toml", environ={}).server.port
    assert port == Config().server.port
    assert [int(args.split("/")[0]) for args in instructions("EXPOSE")] == [port]
    replicas = [svc for svc in our_services().values() if svc.get("command") == ["serve"]]
    published = [str(mapping) for svc in replicas for mapping in svc["ports"]]
    assert [int(mapping.rsplit(":", 1)[1]) for mapping in published] == [port] * len(replicas)
    assert len({mapping.rsplit(":", 1)[0] for mapping in published}) == len(replicas)  # one host port each
    healthcheck = instructions("HEALTHCHECK")[-1]
    assert f"'{port}'" in healthcheck  # the default when PSS_SERVER_PORT is unset


def test_healthcheck_path_is_a_registered_route() -> None:
    match = re.search(r"http://127\.0\.0\.1:[^/]+(/\w+)", instructions("HEALTHCHECK")[-1])
    assert match is not None, "HEALTHCHECK must request http://127.0.0.1:<port>/<path>"
    path = match.group(1)
    assert path == "/healthz"
    app = create_app(load_config(ROOT / "config.toml", environ={}))
    routes = {
        route.resource.canonical for route in app.router.routes() if route.method == "GET" and route.resource
    }
    assert path in routes, f"no GET {path} route in the application's router"


def test_compose_runs_three_nodes_redis_the_schema_at_rf3_and_two_replicas() -> None:
    services = compose()["services"]
    nodes = [f"cassandra{i}" for i in (1, 2, 3)]
    for previous, node in zip([None, *nodes], nodes, strict=False):
        assert services[node]["image"] == "cassandra:5.0"
        assert "cqlsh" in " ".join(services[node]["healthcheck"]["test"])
        assert f"{node}-data:/var/lib/cassandra" in services[node]["volumes"]
        assert f"{node}-data" in compose()["volumes"]
        seeds = services[node]["environment"]["CASSANDRA_SEEDS"].split(",")
        assert set(seeds) <= set(nodes) and len(seeds) >= 2
        if previous is not None:  # bootstrapping nodes join one at a time
            assert services[node]["depends_on"] == {previous: {"condition": "service_healthy"}}
    assert "redis-cli" in " ".join(services["redis"]["healthcheck"]["test"])
    schema = services["schema"]
    assert schema["depends_on"] == {node: {"condition": "service_healthy"} for node in nodes}
    environ = {name: resolve_interpolation(str(value)) for name, value in schema["environment"].items()}
    assert load_config(ROOT / "config.toml", environ=environ).cassandra.replication_factor == 3
    replicas = [name for name, svc in services.items() if svc.get("command") == ["serve"]]
    assert replicas == ["daemon1", "daemon2"]
    for name in ("schema", *replicas):
        contact_points = services[name]["environment"]["PSS_CASSANDRA_CONTACT_POINTS"].split(",")
        assert contact_points == nodes, f"{name}: contact points {contact_points} are not the three nodes"
    for name in replicas:
        assert services[name]["depends_on"] == {
            "schema": {"condition": "service_completed_successfully"}, "redis": {"condition": "service_healthy"},
        }
        bus = load_config(ROOT / "config.toml", environ={"PSS_LIVE_BUS": services[name]["environment"]["PSS_LIVE_BUS"]})
        assert bus.live.bus.startswith("redis://redis:"), f"{name}: the live bus must be the compose redis"


def test_image_runs_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users and users[-1] not in {"root", "0"}
