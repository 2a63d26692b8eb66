"""`make demo-live`: the embedded demo's backtest through the live path on this machine.

No Docker engine runs here, so the services of docker-compose.yml are started as local processes with the
commands and environment the compose file declares, read from it: the addresses of its kafka and postgres
services become a local KRaft broker and a local PostgreSQL (both fresh, stopped after). The Complete Journey
year goes onto the purchases topic (`nudge produce`), the workers take it, and the scheduler runs the demo's
campaigns on the stream's clock (`--clock event`, not the compose file's wall clock: that is what makes it a
backtest), then prints the campaign table. When `make demo` has run over the same months, the two tables are
compared.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEMO_FROM, DEMO_UNTIL = "2017-11-01", "2018-01-01"  # the embedded demo's (engine.cli DEMO_START, DEMO_END)
CONSENT = "campaigns/consent/cj_consent.csv"


def compose_service(name: str, path: Path = COMPOSE) -> dict[str, Any]:
    """A service of the compose file: its `command` as a list and its `environment` as a mapping."""
    services = (yaml.safe_load(path.read_text()) or {}).get("services", {})
    if name not in services:
        raise ConfigError(f"{path}: no service {name!r} (services: {', '.join(services) or 'none'})")
    service = dict(services[name])
    command = service.get("command") or []
    service["command"] = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    service["environment"] = {str(k): str(v) for k, v in env.items()}
    return service


def local_environment(declared: dict[str, str], bootstrap: str, db_url: str, home: Path) -> dict[str, str]:
    """The compose file's environment with its service addresses replaced by the local ones."""
    env = dict(declared)
    env["NUDGE_KAFKA_BOOTSTRAP"] = bootstrap
    env["NUDGE_DB_URL"] = db_url
    env["NUDGE_HOME"] = str(home)
    return env


def _nudge(command: list[str]) -> list[str]:
    """A compose `command` (`nudge ...`) as this venv runs it."""
    if not command or command[0] != "nudge":
        raise ConfigError(f"{COMPOSE}: a service command should start with `nudge`, not {command!r}")
    return [sys.executable, "-m", "engine.cli", *command[1:]]


def _replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def _with_event_clock(command: list[str], start: str, until: str) -> list[str]:
    """The scheduler's command on the stream's clock, over the demo's months, stopping when the stream is read."""
    out, skip = [], False
    for arg in command:
        if skip:
            skip = False
            continue
        if arg == "--clock":
            skip = True
            continue
        if not arg.startswith("--clock="):
            out.append(arg)
    return [*out, "--clock", "event", "--drain", "--fresh", "--from", start, "--until", until, "--consent", CONSENT]


def embedded_table(home: Path, start: str, until: str) -> list[dict] | None:
    """The campaign table `make demo` left in `home`, when its last run covered the same months."""
    from sqlalchemy import select

    from engine.db import connect, store_meta
    from engine.delivery.ledger import Ledger
    from engine.runtime.campaigns import campaign_table

    db = home / "nudge.db"
    if not db.exists():
        return None
    engine = connect(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            row = conn.execute(select(store_meta.c.value).where(store_meta.c.key == "report:run")).first()
        run = json.loads(row.value) if row else {}
        if run.get("source") != "cj" or not (run.get("from") or "").startswith(start) \
                or not (run.get("until") or "").startswith(until):
            return None
        return campaign_table(Ledger(engine), {})
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run the live demo; 0 when the scheduler finished (and, when compared, the tables are equal)."""
    parser = argparse.ArgumentParser(prog="python -m engine.live.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, help="the first N households only (a quick run)")
    parser.add_argument("--home", type=Path, default=ROOT / ".nudge-live", help="the live engine's home (reset)")
    parser.add_argument("--from", dest="start", default=DEMO_FROM)
    parser.add_argument("--until", default=DEMO_UNTIL)
    args = parser.parse_args(argv)
    from engine.live.broker import CACHE, KafkaBroker, fetch_jars
    from engine.live.postgres import PostgresServer, install_if_missing
    from engine.runtime.campaigns import campaign_table

    worker, scheduler = compose_service("worker"), compose_service("scheduler")
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    install_if_missing()
    scratch = Path(tempfile.mkdtemp(prefix="nudge-live-"))
    procs: list[subprocess.Popen] = []
    started = time.monotonic()
    try:
        with PostgresServer(durable=False) as pg, \
                KafkaBroker(scratch / "kafka", fetch_jars(CACHE)) as broker:
            env_of = {name: {**os.environ, **local_environment(s["environment"], broker.bootstrap, pg.url,
                                                                 args.home)}
                      for name, s in (("worker", worker), ("scheduler", scheduler))}
            topic = env_of["worker"].get("NUDGE_KAFKA_TOPIC", "purchases")
            messages = env_of["scheduler"].get("NUDGE_KAFKA_MESSAGES_TOPIC", "messages")
            for name, partitions in ((topic, 4), (f"{topic}.deadletter", 1), (messages, 4)):
                broker.create_topic(name, partitions)
            print(f"broker {broker.bootstrap}, PostgreSQL {pg.url}, home {args.home}", flush=True)
            produce = [sys.executable, "-m", "engine.cli", "produce", "--source", "cj", "--topic", topic]
            if args.households:
                produce += ["--households", str(args.households)]
            subprocess.run(produce, env=env_of["worker"], check=True)
            for i in range(_replicas(worker)):
                env = {**env_of["worker"], "NUDGE_WORKER_NAME": f"worker-{i + 1}"}
                log = (args.home / f"worker-{i + 1}.log").open("w")
                procs.append(subprocess.Popen(_nudge(worker["command"]), env=env, stdout=log, stderr=log))
            command = _with_event_clock(_nudge(scheduler["command"]), args.start, args.until)
            print("scheduler: " + " ".join(command[2:]), flush=True)
            done = subprocess.run(command, env=env_of["scheduler"])
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            if done.returncode != 0:
                return done.returncode
            live = campaign_table(_ledger(pg.url), {})
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"live demo: {time.monotonic() - started:.0f} s", flush=True)
    if args.households:
        return 0
    embedded = embedded_table(ROOT / ".nudge", args.start, args.until)
    if embedded is None:
        print("run `make demo` over the same months to compare with the embedded runtime's table")
        return 0
    same = _recorded(live) == _recorded(embedded)
    print(f"same campaign table as the embedded demo (`make demo`): {'yes' if same else 'NO'}")
    return 0 if same else 1


def _ledger(url: str):
    from engine.db import connect
    from engine.delivery.ledger import Ledger

    return Ledger(connect(url))


def _recorded(rows: list[dict]) -> list[dict]:
    """The table's figures the ledger holds (the outranked counts are a run's own)."""
    return [{k: v for k, v in r.items() if k not in ("candidates", "outranked")} for r in rows]


if __name__ == "__main__":
    sys.exit(main())
