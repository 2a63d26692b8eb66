"""docker-compose.yml as `make demo-live` and a deployment read it: every NUDGE_* variable is a setting and parses as
one, every `nudge` command is one the CLI takes, the worker scales out, and the worker and the scheduler share one
store."""

from __future__ import annotations

import os
from typing import Any

import pytest
import typer.main
import yaml

from engine.cli import app
from engine.config import Settings
from engine.live.demo import COMPOSE, compose_service

PREFIX = "NUDGE_"


def services() -> dict[str, dict[str, Any]]:
    """Each service with its command as a list and its environment as a mapping, as the local runner reads them."""
    return {name: compose_service(name) for name in yaml.safe_load(COMPOSE.read_text())["services"]}


def settings_of(service: dict[str, Any]) -> dict[str, str]:
    """The service's NUDGE_* variables by the Settings field each one names (NUDGE_FOO_BAR -> foo_bar)."""
    env = service["environment"]
    return {k.removeprefix(PREFIX).lower(): v for k, v in env.items() if k.startswith(PREFIX)}


@pytest.mark.parametrize("name", list(services()))
def test_every_nudge_variable_is_a_setting_that_parses(name, monkeypatch) -> None:
    declared = settings_of(services()[name])
    unknown = sorted(f"{PREFIX}{f.upper()}" for f in declared if f not in Settings.model_fields)
    assert not unknown, f"service {name}: not settings of engine.config.Settings: {unknown}"
    for key in [k for k in os.environ if k.startswith(PREFIX)]:
        monkeypatch.delenv(key)
    for field, value in declared.items():
        monkeypatch.setenv(f"{PREFIX}{field.upper()}", value)
    parsed = Settings(_env_file=None)  # as the service's process reads its environment: a bad value raises here
    assert parsed.model_fields_set == set(declared)


def test_every_nudge_command_is_one_the_cli_takes() -> None:
    cli = typer.main.get_command(app)
    named = {name: s["command"] for name, s in services().items() if s["command"][:1] == ["nudge"]}
    assert {"worker", "scheduler"} <= set(named)
    for name, command in named.items():
        sub = cli.commands.get(command[1])
        assert sub is not None, f"service {name}: `nudge {command[1]}` is not a command ({sorted(cli.commands)})"
        sub.make_context(command[1], command[2:])  # its options parse, or click says what it refuses


def test_the_worker_scales_out_and_shares_one_store_with_the_scheduler() -> None:
    found = services()
    worker, scheduler = found["worker"], found["scheduler"]
    assert "container_name" not in worker
    assert not [p for p in worker.get("ports", []) if _fixed_host_port(p)], "a fixed host port allows one replica"
    assert worker.get("deploy", {}).get("replicas", 1) >= 2
    assert "NUDGE_WORKER_NAME" not in worker["environment"], "replicas sharing one static name fence each other"
    shared = ("NUDGE_HOME", "NUDGE_DB_URL", "NUDGE_KAFKA_BOOTSTRAP", "NUDGE_KAFKA_TOPIC")
    assert {k: worker["environment"][k] for k in shared} == {k: scheduler["environment"][k] for k in shared}
    assert worker["environment"]["NUDGE_DB_URL"].startswith("postgresql")  # several processes: not SQLite
    home = worker["environment"]["NUDGE_HOME"]
    mounts = [{v for v in s.get("volumes", []) if v.split(":")[1:2] == [home]} for s in (worker, scheduler)]
    assert mounts[0] and mounts[0] == mounts[1], f"{home} (the line store) is not one volume for both"


def _fixed_host_port(port: str | int | dict) -> bool:
    """Whether a `ports` entry pins a host port ("8080:80", "127.0.0.1:8080:80", or `published` in the long form)."""
    if isinstance(port, dict):
        return "published" in port
    parts = str(port).split(":")
    return len(parts) >= 2 and bool(parts[-2])
