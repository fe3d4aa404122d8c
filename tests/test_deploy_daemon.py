"""The daemon's samples: the Dockerfile, ``deploy/docker/compose.yaml``,
``deploy/kubernetes/deployment.yaml`` and ``deploy/systemd/eemt-cleanup-daemon.service``.

There is no container runtime, cluster or booted systemd here, so each is checked as far as
it can be without one: it parses; every ``eemt-cleanup`` command it names exists and every
flag it passes is a real option of that command (asked of the Typer app itself); every
environment variable is one the config loader reads, with a value it accepts; the services
see the data at the same paths; and the image's entrypoint runs, as a process, against a
sample base: it becomes healthy and stops with exit 0 on SIGTERM.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer.main
import yaml
from conftest import cli_executable, guarded_env, make_demo_base, snapshot
from servers import wait_for
from test_deploy import INSTALLED_CLI, SYSTEMD_SECTIONS, URI_SCHEMES, parse_unit

from eemt_cleanup import cli as cli_module
from eemt_cleanup.config.loader import CONFIG_ENV, DRY_RUN_ENV, ENVIRONMENT

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "deploy" / "docker" / "compose.yaml"
DEPLOYMENT = REPO / "deploy" / "kubernetes" / "deployment.yaml"
CRONJOB = REPO / "deploy" / "kubernetes" / "cronjob.yaml"
UNITS = REPO / "deploy" / "systemd"
DAEMON_UNIT = UNITS / "eemt-cleanup-daemon.service"
ONESHOT_UNIT = UNITS / "eemt-cleanup.service"
INSTALLER = REPO / "scripts" / "setup_cleanup_cron.sh"
PROGRAM_NAMES = {"eemt-cleanup", INSTALLED_CLI}
# Variables the samples may set besides the loader's: the zone naive timestamps are read in.
OTHER_ENVIRONMENT = {"TZ"}
KNOWN_ENVIRONMENT = set(ENVIRONMENT) | {CONFIG_ENV, DRY_RUN_ENV} | OTHER_ENVIRONMENT


# --------------------------------------------------------------------------- the command line


def root_command() -> Any:
    return typer.main.get_command(cli_module.app)


def option_default(command: str, option: str) -> Any:
    (param,) = [p for p in root_command().commands[command].params if option in p.opts]
    return param.default


def check_command_line(argv: list[str], where: str) -> str:
    """``argv`` names a real command, and passes only its real options (each value skipped);
    returns the command's path (``daemon``, ``config show``)."""
    assert argv and argv[0] in PROGRAM_NAMES, f"{where}: not the program: {argv}"
    command = root_command()
    path: list[str] = []
    rest = argv[1:]
    while hasattr(command, "commands"):
        assert rest, f"{where}: no command after {path}: {argv}"
        assert rest[0] in command.commands, f"{where}: no command {rest[0]!r}: {argv}"
        path.append(rest[0])
        command = command.commands[rest[0]]
        rest = rest[1:]
    options: dict[str, Any] = {"-h": None, "--help": None}
    for param in command.params:
        if param.param_type_name == "option":
            for name in [*param.opts, *param.secondary_opts]:
                options[name] = param
    index = 0
    while index < len(rest):
        token = rest[index]
        index += 1
        if not token.startswith("-") or token == "-":
            continue
        name, equals, _ = token.partition("=")
        assert name in options, f"{where}: {' '.join(path)} has no option {name}: {argv}"
        param = options[name]
        takes_value = param is not None and not param.is_flag and not param.count
        if takes_value and not equals:
            assert index < len(rest), f"{where}: {name} needs a value: {argv}"
            index += 1
    return " ".join(path)


def value_after(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def exec_command_lines(text: str) -> list[list[str]]:
    """Commands in comments run through ``docker exec``, ``compose exec`` or ``kubectl
    exec`` that start the program: their argv from the program on."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("#") or " exec " not in line:
            continue
        words = shlex.split(line.lstrip("#"))
        rest = words[words.index("exec") + 1 :]
        if "--" in rest:
            rest = rest[rest.index("--") + 1 :]
        else:
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            rest = rest[1:]  # the container or service
        if rest and rest[0] in PROGRAM_NAMES:
            found.append(rest)
    return found


# --------------------------------------------------------------------------- Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined and
    comments dropped (as Docker reads it)."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        assert keyword.isupper(), f"Dockerfile: not an instruction: {line}"
        instructions.append((keyword, arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def instruction(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), arguments
    return value


def entrypoint_and_command() -> tuple[list[str], list[str]]:
    (entrypoint,) = instruction("ENTRYPOINT")
    (command,) = instruction("CMD")
    return exec_form(entrypoint), exec_form(command)


def healthcheck() -> tuple[dict[str, str], list[str]]:
    (arguments,) = instruction("HEALTHCHECK")
    options: dict[str, str] = {}
    words = arguments.split(" ")
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0).partition("=")
        options[name] = value
    rest = " ".join(words).strip()
    assert rest.startswith("CMD "), arguments
    return options, exec_form(rest.removeprefix("CMD "))


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match, duration
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def arg_defaults() -> dict[str, str]:
    return dict(arguments.partition("=")[::2] for arguments in instruction("ARG"))


def test_the_dockerfile_builds_from_slim_python_with_the_program_as_entrypoint() -> None:
    (base,) = instruction("FROM")
    assert base == "python:3.11-slim"
    entrypoint, command = entrypoint_and_command()
    assert entrypoint == ["eemt-cleanup"]
    assert command[0] == "daemon" and "--health-file" in command
    check_command_line(entrypoint + command, "Dockerfile ENTRYPOINT + CMD")
    # The package is installed from the checkout, not fetched by name.
    (install,) = [run for run in instruction("RUN") if "pip install" in run]
    assert '"/src${EXTRAS:+[$EXTRAS]}"' in install


def test_the_healthcheck_reads_the_file_the_default_command_touches() -> None:
    _, command = entrypoint_and_command()
    options, probe = healthcheck()
    assert check_command_line(probe, "HEALTHCHECK") == "health"
    assert value_after(probe, "--file") == value_after(command, "--health-file")
    # The daemon touches the file more often than the check runs; stale means stuck.
    max_age = float(option_default("health", "--max-age"))
    assert seconds(options["--interval"]) < max_age
    assert seconds(options["--timeout"]) < seconds(options["--interval"])
    assert "--start-period" in options and "--retries" in options


def test_the_image_user_is_root_by_default_and_a_build_argument_chooses_another() -> None:
    defaults = arg_defaults()
    assert defaults["APP_UID"] == "0" and defaults["APP_GID"] == "0"
    (user,) = instruction("USER")
    assert user == "${APP_UID}:${APP_GID}"
    (create,) = [run for run in instruction("RUN") if "useradd" in run]
    assert '"$APP_UID"' in create and '"$APP_GID"' in create
    text = DOCKERFILE.read_text()
    assert "--build-arg APP_UID=1000" in text  # documented where it is defined


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """``.dockerignore`` as (re-include?, pattern) in order: the last match decides."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", glob):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        patterns.append((include, re.compile(regex + r"\Z")))
    return patterns


def in_build_context(relative: str) -> bool:
    """Whether Docker sends ``relative`` (a file of the checkout) to the build."""
    patterns = dockerignore_patterns()
    parts = PurePosixPath(relative).parts
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        excluded = False
        for include, pattern in patterns:
            if pattern.match(prefix):
                excluded = not include
        if excluded:
            return False
    return True


def test_the_build_context_holds_the_package_and_nothing_else() -> None:
    for copy in instruction("COPY"):
        *sources, _target = copy.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert in_build_context(source), f".dockerignore excludes {source}"
    package = [str(path.relative_to(REPO)) for path in (REPO / "eemt_cleanup").rglob("*.py")]
    assert package and all(in_build_context(path) for path in package)
    outside = (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "jobs.db",
        "eemt_cleanup/__pycache__/cli.cpython-311.pyc",
        "deploy/cron/eemt-cleanup",
    )
    for path in outside:
        assert not in_build_context(path), path


# --------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def sidecar() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["eemt-cleanup"]
    return service


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts as {container path: host path}."""
    found = {}
    for volume in service["volumes"]:
        # SOURCE:TARGET[:MODE]; SOURCE may hold ${VAR:-default}, TARGET is absolute.
        match = re.fullmatch(r"(?P<source>.+?):(?P<target>/[^:]*)(?::(?P<mode>ro|rw))?", volume)
        assert match, volume
        found[match["target"]] = match["source"]
    return found


def inside(path: str, directory: str) -> bool:
    return PurePosixPath(path).is_relative_to(directory)


def test_compose_runs_the_daemon_as_a_sidecar_of_the_web_interface() -> None:
    services = compose()["services"]
    assert set(services) == {"eemt-web", "eemt-cleanup"}
    assert services["eemt-web"]["container_name"] == "eemt-web"  # what `docker exec` names
    service = sidecar()
    entrypoint, _ = entrypoint_and_command()
    argv = entrypoint + service["command"]
    assert check_command_line(argv, "compose eemt-cleanup") == "daemon"
    _, probe = healthcheck()
    assert value_after(service["command"], "--health-file") == value_after(probe, "--file")
    # It is the repository's image, built with arguments the Dockerfile declares.
    build = service["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == REPO
    assert set(build["args"]) <= set(arg_defaults())
    assert service["init"] is True
    stop_timeout = float(option_default("daemon", "--stop-timeout"))
    assert seconds(service["stop_grace_period"]) > stop_timeout


def test_compose_sets_the_documented_switches_and_only_variables_the_loader_reads() -> None:
    environment = sidecar()["environment"]
    assert environment["EEMT_ENABLE_AUTO_CLEANUP"] == "true"
    assert environment["EEMT_CLEANUP_SCHEDULE"] == "0 2 * * *"
    for service in compose()["services"].values():
        assert set(service.get("environment", {})) <= KNOWN_ENVIRONMENT


def test_compose_environment_values_are_accepted_by_the_loader(tmp_path: Path) -> None:
    environment = {
        name: value for name, value in sidecar()["environment"].items() if name.startswith("EEMT_")
    }
    # An empty config file: the values shown come from the environment or the defaults.
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    done = subprocess.run(
        [cli_executable(), "config", "show", "--json"],
        cwd=tmp_path,
        env=guarded_env(tmp_path, **environment, EEMT_CLEANUP_CONFIG=str(empty)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    shown = {row["key"]: row for row in json.loads(done.stdout)}
    for name in environment:
        key = ENVIRONMENT[name][0]
        assert shown[key]["source"] == f"env {name}", (name, shown[key])
    assert shown["schedule.enabled"]["value"] is True
    assert shown["schedule.cron"]["value"] == "0 2 * * *"
    assert shown["paths.database"]["value"] == environment["EEMT_DB_PATH"]


def test_compose_services_see_the_data_at_the_same_paths_and_share_the_database_directory() -> None:
    services = compose()["services"]
    web, cleanup = mounts(services["eemt-web"]), mounts(services["eemt-cleanup"])
    assert cleanup == web
    environment = services["eemt-cleanup"]["environment"]
    for name in ("EEMT_DB_PATH", "EEMT_UPLOADS_DIR", "EEMT_RESULTS_DIR", "EEMT_TEMP_DIR"):
        assert any(inside(environment[name], target) for target in cleanup), name
    # jobs.db is shared through its directory (SQLite's journal lives beside it).
    database = environment["EEMT_DB_PATH"]
    assert database not in cleanup
    assert str(PurePosixPath(database).parent) in cleanup
    # The roots are distinct mounts, none inside another.
    roots = [
        environment[name] for name in ("EEMT_UPLOADS_DIR", "EEMT_RESULTS_DIR", "EEMT_TEMP_DIR")
    ]
    assert len(set(roots)) == 3 and all(root in cleanup for root in roots)
    # Both read naive timestamps in the same zone.
    assert services["eemt-web"]["environment"]["TZ"] == environment["TZ"]


def test_compose_comments_show_docker_exec_with_real_commands_and_flags() -> None:
    text = COMPOSE.read_text()
    commands = exec_command_lines(text)
    assert len(commands) >= 3, commands
    for argv in commands:
        check_command_line(argv, "compose comment")
    assert "docker exec eemt-web eemt-cleanup run" in text


# --------------------------------------------------------------------------- Kubernetes


def manifests() -> dict[str, dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(DEPLOYMENT.read_text()) if doc]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents) == 2
    return by_kind


def daemon_container() -> dict[str, Any]:
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def cronjob_pod() -> dict[str, Any]:
    pod: dict[str, Any] = yaml.safe_load(CRONJOB.read_text())["spec"]["jobTemplate"]["spec"][
        "template"
    ]["spec"]
    return pod


def test_the_deployment_is_one_pod_recreated_never_two() -> None:
    deployment = manifests()["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    stop_timeout = float(option_default("daemon", "--stop-timeout"))
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > stop_timeout


def test_the_deployment_runs_the_daemon_with_a_liveness_probe_on_its_health_file() -> None:
    container = daemon_container()
    command = container["command"]
    assert command[0] == INSTALLED_CLI
    assert check_command_line(command, "deployment command") == "daemon"
    probe = container["livenessProbe"]["exec"]["command"]
    assert check_command_line(probe, "deployment livenessProbe") == "health"
    assert value_after(probe, "--file") == value_after(command, "--health-file")
    period = container["livenessProbe"]["periodSeconds"]
    assert period < float(option_default("health", "--max-age"))
    for name in (variable["name"] for variable in container.get("env", [])):
        assert name in KNOWN_ENVIRONMENT, name
    comments = exec_command_lines(DEPLOYMENT.read_text())
    assert comments
    for argv in comments:
        check_command_line(argv, "deployment comment")


def volume_mounts() -> dict[str, str]:
    return {mount["mountPath"]: mount["name"] for mount in daemon_container()["volumeMounts"]}


def pod_volumes() -> dict[str, dict[str, Any]]:
    spec = manifests()["Deployment"]["spec"]["template"]["spec"]
    return {volume["name"]: volume for volume in spec["volumes"]}


def test_the_deployment_uses_the_cronjobs_claim_at_the_cronjobs_path() -> None:
    volumes = pod_volumes()
    ((cron_mount,),) = [container["volumeMounts"] for container in cronjob_pod()["containers"]]
    (cron_volume,) = [v for v in cronjob_pod()["volumes"] if v["name"] == cron_mount["name"]]
    claim = cron_volume["persistentVolumeClaim"]["claimName"]
    data_name = volume_mounts()[cron_mount["mountPath"]]
    assert volumes[data_name]["persistentVolumeClaim"]["claimName"] == claim


def configmap_config() -> tuple[str, str]:
    """The ConfigMap's file name and text."""
    ((name, text),) = manifests()["ConfigMap"]["data"].items()
    return name, text


def test_the_config_comes_from_the_configmap_mounted_where_config_points() -> None:
    config_path = PurePosixPath(value_after(daemon_container()["command"], "--config"))
    name, text = configmap_config()
    assert config_path.name == name
    volume = pod_volumes()[volume_mounts()[str(config_path.parent)]]
    assert volume["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
    # Its paths are the volume's, and the very values the CronJob gives in its environment.
    paths = yaml.safe_load(text)["paths"]
    data_path = next(path for path, vol in volume_mounts().items() if vol == "data")
    assert all(inside(value, data_path) for value in paths.values())
    cron_env = {v["name"]: v["value"] for v in cronjob_pod()["containers"][0]["env"]}
    for variable, (key, _) in ENVIRONMENT.items():
        if key.startswith("paths.") and variable in cron_env:
            assert paths[key.removeprefix("paths.")] == cron_env[variable], key


def test_the_health_file_is_on_a_writable_volume_under_a_read_only_root() -> None:
    container = daemon_container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    health = PurePosixPath(value_after(container["command"], "--health-file"))
    volume = pod_volumes()[volume_mounts()[str(health.parent)]]
    assert "emptyDir" in volume


def test_the_configmap_config_validates(tmp_path: Path) -> None:
    name, text = configmap_config()
    data = tmp_path / "data"
    for root in ("uploads", "results", "temp"):
        (data / root).mkdir(parents=True)
    data_path = next(path for path, vol in volume_mounts().items() if vol == "data")
    config = tmp_path / name
    config.write_text(text.replace(data_path, str(data)))
    done = subprocess.run(
        [cli_executable(), "config", "validate", str(config)],
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{config}: valid" in done.stdout


# --------------------------------------------------------------------------- systemd


def test_the_daemon_unit_runs_the_installed_program_with_real_flags() -> None:
    sections, _ = parse_unit(DAEMON_UNIT)
    assert set(sections) <= SYSTEMD_SECTIONS and "Timer" not in sections
    service = sections["Service"]
    assert service["Type"] == ["simple"]
    (line,) = service["ExecStart"]
    argv = shlex.split(line)
    assert argv[0] == INSTALLED_CLI
    assert check_command_line(argv, "daemon unit ExecStart") == "daemon"
    assert value_after(argv, "--config") == "/etc/eemt-cleanup/cleanup_config.yaml"
    assert value_after(argv, "--health-file").startswith("%t/")
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["Restart"] == ["on-failure"]
    assert "2" in service["RestartPreventExitStatus"][0].split()
    assert service["KillMode"] == ["mixed"]
    stop_timeout = float(option_default("daemon", "--stop-timeout"))
    assert float(service["TimeoutStopSec"][0]) > stop_timeout
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    oneshot, _ = parse_unit(ONESHOT_UNIT)
    assert sections["Unit"]["Documentation"] == oneshot["Unit"]["Documentation"]
    for value in sections["Unit"]["Documentation"][0].split():
        assert value.split(":", 1)[0] in URI_SCHEMES


def installer_constant(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", INSTALLER.read_text(), re.MULTILINE)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize("unit", [ONESHOT_UNIT, DAEMON_UNIT], ids=lambda path: path.name)
def test_the_units_name_the_paths_the_installer_replaces(unit: Path) -> None:
    sections, _ = parse_unit(unit)
    (line,) = sections["Service"]["ExecStart"]
    argv = shlex.split(line)
    assert argv[0] == installer_constant("TEMPLATE_BIN") == INSTALLED_CLI
    assert value_after(argv, "--config") == installer_constant("TEMPLATE_CONFIG")


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (package systemd): the daemon unit is not verified",
)
def test_systemd_analyze_verify_has_nothing_to_say_about_the_daemon_unit(tmp_path: Path) -> None:
    text = DAEMON_UNIT.read_text().replace(INSTALLED_CLI, cli_executable())
    (tmp_path / DAEMON_UNIT.name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / DAEMON_UNIT.name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# --------------------------------------------------------------------------- the entrypoint runs


def far_schedule() -> str:
    """A cron expression whose next slot is about half a year away."""
    day = datetime.now(UTC) + timedelta(days=180)
    return f"0 3 {day.day} {day.month} *"


def test_the_image_entrypoint_runs_becomes_healthy_and_exits_0_on_sigterm(
    tmp_path: Path,
) -> None:
    """ENTRYPOINT + CMD as the image runs them (the installed CLI standing in for the image's
    /usr/local/bin/eemt-cleanup), with the compose sidecar's environment aimed at a sample
    base: there is no container runtime here to run the image itself."""
    demo = make_demo_base(tmp_path / "base")
    entrypoint, command = entrypoint_and_command()
    image_health = value_after(command, "--health-file")
    health = tmp_path / "health" / "eemt-cleanup.health"
    health.parent.mkdir()
    argv = [cli_executable() if word == "eemt-cleanup" else word for word in entrypoint]
    argv += [str(health) if word == image_health else word for word in command]

    environment = {k: v for k, v in sidecar()["environment"].items() if k.startswith("EEMT_")}
    environment.update(
        EEMT_CLEANUP_SCHEDULE=far_schedule(),
        EEMT_DB_PATH=str(demo.db),
        EEMT_UPLOADS_DIR=str(demo.path / "uploads"),
        EEMT_RESULTS_DIR=str(demo.path / "results"),
        EEMT_TEMP_DIR=str(demo.path / "temp"),
    )
    # The image's own ENV holds only Python and pip switches, nothing the daemon reads.
    image_env = " ".join(instruction("ENV"))
    assert "PATH" not in image_env and "EEMT_" not in image_env
    # ./cleanup_config.yaml in the working directory (the image's WORKDIR), empty: discovery
    # stops there, so nothing of this machine's /etc/eemt-cleanup is read.
    config = tmp_path / "app" / "cleanup_config.yaml"
    config.parent.mkdir()
    config.write_text("{}\n")
    env = guarded_env(tmp_path, **environment, TZ="UTC")
    before = {root: snapshot(demo.path / root) for root in ("uploads", "results", "temp")}

    stderr = tmp_path / "daemon.stderr"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            argv, cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=errors
        )
        try:
            wait_for(health.exists, timeout=60)
            _, probe = healthcheck()
            probe = [cli_executable() if w == "eemt-cleanup" else w for w in probe]
            probe = [str(health) if w == image_health else w for w in probe]
            checked = subprocess.run(
                probe, env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    log = stderr.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    assert "next run at" in log
    # The schedule is far away: no run started, nothing was deleted.
    assert {root: snapshot(demo.path / root) for root in before} == before
    assert health.exists()
