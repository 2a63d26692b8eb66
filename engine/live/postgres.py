"""A local PostgreSQL server for tests and demos: the shared store when several processes run one engine.

A cluster in a folder of its own, trust authentication, listening on 127.0.0.1 and a unix socket in that folder.
PostgreSQL refuses to run as root, so as root every command runs as the `postgres` user in folders it owns.

    python -m engine.live.postgres install            # apt-get install postgresql when pg_ctl is missing
    python -m engine.live.postgres start --dir DIR    # DIR/postgres.json holds the URL, port and pid
    python -m engine.live.postgres stop --dir DIR
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.errors import NudgeError

USER = "nudge"  # the cluster's superuser
DATABASE = "nudge"
_TOOLS = ("pg_ctl", "initdb", "postgres")


def find_binaries() -> Path:
    """The folder holding pg_ctl, initdb and postgres: from PATH first, then /usr/lib/postgresql/*/bin."""
    candidates = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)  # /usr/local/bin/pg_ctl may be a link into the real folder
        candidates.append(Path(on_path).parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if all((folder / tool).is_file() for tool in _TOOLS):
            return folder
    raise NudgeError("PostgreSQL: no folder with pg_ctl, initdb and postgres on PATH or under "
                     "/usr/lib/postgresql/*/bin; install it: apt-get install postgresql "
                     "(or `python -m engine.live.postgres install` as root)")


def install_if_missing() -> Path:
    """The binaries' folder, installing Debian's `postgresql` with apt-get first when they are missing (as root)."""
    try:
        return find_binaries()
    except NudgeError:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise NudgeError(f"PostgreSQL: `{' '.join(command)}` failed ({done.returncode}): "
                             f"{done.stderr.strip()[-2000:]}")
    return find_binaries()


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster in `root` (a new temporary folder when None), started on entering, stopped on leaving.

    `durable=False` turns fsync and synchronous commit off: what tests want, never a store to keep.
    """

    def __init__(self, root: Path | None = None, *, durable: bool = True, port: int | None = None,
                 timeout: float = 30.0) -> None:
        self.owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="nudge-pg-")) if root is None else Path(root).absolute()
        self.durable = durable
        self.port = port
        self.timeout = timeout
        self.bin: Path | None = None

    # -- where things are ----------------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        """The cluster's data folder."""
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """The folder of the unix socket (short: a socket path is limited to about 100 bytes)."""
        return self.root

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.root / "postgres.log"

    def url_of(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this server, over the unix socket."""
        if self.port is None:
            raise NudgeError(f"PostgreSQL in {self.root}: not started (no port yet)")
        return f"postgresql+psycopg://{USER}@/{database}?host={self.socket_dir}&port={self.port}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the `nudge` database."""
        return self.url_of(DATABASE)

    # -- running -------------------------------------------------------------------------------------------------
    def _run(self, *command: str | Path, check: bool = True) -> subprocess.CompletedProcess:
        args = [str(c) for c in command]
        if os.geteuid() == 0:  # initdb and postgres refuse root
            args = ["runuser", "-u", "postgres", "--", *args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout + 30)
        if check and done.returncode:
            raise NudgeError(f"PostgreSQL in {self.root}: `{' '.join(args)}` failed ({done.returncode}): "
                             f"{(done.stderr or done.stdout).strip()[-1500:]}{self._log_tail()}")
        return done

    def _log_tail(self, lines: int = 20) -> str:
        try:
            tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- server log ---\n" + "\n".join(tail) if tail else ""

    def _own_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        try:
            shutil.chown(self.root, "postgres", "postgres")
        except LookupError:
            raise NudgeError("PostgreSQL refuses to run as root, and there is no `postgres` user to run it as "
                             "(apt-get install postgresql creates it)") from None
        self.root.chmod(0o700)
        if self._run("test", "-w", self.root, check=False).returncode:
            raise NudgeError(f"PostgreSQL: the postgres user cannot reach {self.root}: a parent folder is closed "
                             "to it (use a folder under /tmp)")

    def _init(self, bin_dir: Path) -> None:
        args = ["-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C"]
        self._run(bin_dir / "initdb", *args, *([] if self.durable else ["--no-sync"]))
        settings = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{self.socket_dir}'"}
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        with (self.data / "postgresql.conf").open("a") as conf:  # stays the postgres user's file
            conf.write("\n# nudge\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def start(self) -> PostgresServer:
        """initdb (once), start on a free port, wait until it answers, create the `nudge` database."""
        self.bin = bin_dir = find_binaries()
        self._own_root()
        if not (self.data / "PG_VERSION").exists():
            self._init(bin_dir)
        self.port = self.port or free_port()
        self._run(bin_dir / "pg_ctl", "start", "-D", self.data, "-l", self.log, "-w", "-t", str(int(self.timeout)),
                  "-o", f"-p {self.port} -k {self.socket_dir}")
        self._wait()
        self.execute_admin(f"CREATE DATABASE {DATABASE}", missing_only=DATABASE)
        return self

    def _wait(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.timeout
        while True:
            try:
                psycopg.connect(**self._params("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise NudgeError(f"PostgreSQL in {self.root}: not answering on port {self.port} after "
                                     f"{self.timeout:g} s: {exc}{self._log_tail()}") from None
                time.sleep(0.05)

    def _params(self, database: str) -> dict:
        return {"host": str(self.socket_dir), "port": self.port, "user": USER, "dbname": database}

    def execute_admin(self, sql: str, missing_only: str | None = None) -> None:
        """Run `sql` outside a transaction on the `postgres` database (CREATE/DROP DATABASE); with `missing_only`,
        only when no database of that name exists."""
        import psycopg

        with psycopg.connect(**self._params("postgres"), autocommit=True) as conn:
            if missing_only is not None and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                                         (missing_only,)).fetchone():
                return
            conn.execute(sql)

    def pid(self) -> int | None:
        """The postmaster's process id while it runs (a pid file left by a crash, naming no postgres, is None)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if b"postgres" in command else None

    def stop(self) -> None:
        """`pg_ctl stop -m fast`; the postmaster is killed if that fails. A temporary root is removed."""
        pid = self.pid()
        if pid is not None:
            bin_dir = self.bin or find_binaries()
            done = self._run(bin_dir / "pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w", "-t",
                             str(int(self.timeout)), check=False)
            if done.returncode and self.pid() is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """`install`, `start --dir DIR` (returns while the server runs) or `stop --dir DIR`."""
    parser = argparse.ArgumentParser(prog="python -m engine.live.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install", "start", "stop"])
    parser.add_argument("--dir", type=Path, help="the cluster's folder (start, stop)")
    parser.add_argument("--port", type=int, help="start: this port instead of a free one")
    parser.add_argument("--no-fsync", action="store_true", help="start: fsync and synchronous commit off (tests)")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(install_if_missing())
            return 0
        if args.dir is None:
            parser.error(f"{args.command} needs --dir")
        state = args.dir / "postgres.json"
        saved = json.loads(state.read_text()) if state.exists() else {}
        # A restart keeps the port it had, so a NUDGE_DB_URL written down stays right.
        server = PostgresServer(args.dir, durable=not args.no_fsync, port=args.port or saved.get("port"))
        if args.command == "start":
            if server.pid() is not None and saved.get("pid") == server.pid():  # running already
                print(saved["url"])
                return 0
            server.start()
            state.write_text(json.dumps({"url": server.url, "pid": server.pid(), "port": server.port}) + "\n")
            print(server.url)
        else:
            server.stop()
            if saved:
                state.write_text(json.dumps({**saved, "pid": None}) + "\n")
    except NudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
