"""``python -m pipeline.tracking.server``: a shared MLflow tracking server on PostgreSQL.

Without ``--db-url`` (or ``SEQ2SEQ_DB_URL``) it runs its own PostgreSQL cluster in
``outputs/server/postgres`` (made on first use, with a second database for the Optuna
studies of searches; reached only through a Unix socket in that folder, no TCP port, as
the ``postgres`` user when started as root), then ``mlflow server``
on it with proxied artifacts in ``outputs/server/artifacts``. Ctrl-C or SIGTERM stops the
server, then the cluster. Arguments it does not know go to ``mlflow server``
(``--workers 4``, ``--app-name basic-auth``, ...). Its UI opens in Model training mode where
a browser has not chosen a mode (the ``model-training`` app, :mod:`pipeline.tracking.ui_app`),
unless another ``--app-name`` is given.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DB_NAME = "mlflow"
OPTUNA_DB = "optuna"  # the search studies (hydra.sweeper.storage)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
UI_APP = "model-training"  # pipeline.tracking.ui_app, registered in the mlflow.app group


def pg_bin() -> Path | None:
    """The folder of ``pg_ctl`` (on PATH, or Debian's newest /usr/lib/postgresql/N/bin)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


class LocalPostgres:
    """A PostgreSQL cluster in ``folder``, run with ``pg_ctl``; clients connect through the
    Unix socket in that folder (``listen_addresses=''``)."""

    def __init__(self, folder: Path, port: int = 5432):
        self.folder, self.port, self.bin = Path(folder).resolve(), port, pg_bin()
        if self.bin is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql), "
                             "or pass --db-url postgresql://... of an existing database")

    def url_of(self, name: str = DB_NAME) -> str:
        return f"postgresql+psycopg2://postgres@/{name}?host={self.folder}&port={self.port}"

    @property
    def url(self) -> str:
        return self.url_of(DB_NAME)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if check and done.returncode:
            raise SystemExit(f"{tool} failed: {(done.stderr or done.stdout).strip()}")
        return done

    def start(self) -> None:
        """initdb on first use, start the cluster (unless running), create the database."""
        if not (self.folder / "PG_VERSION").exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.folder, "postgres", "postgres")
            self._run("initdb", "-D", str(self.folder), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-instructions")
        running = self._run("pg_ctl", "-D", str(self.folder), "status", check=False)
        if running.returncode:  # 0: left running by a killed server; reuse it
            options = f"-c listen_addresses='' -k {self.folder} -p {self.port}"
            self._run("pg_ctl", "-D", str(self.folder), "-l", str(self.folder / "postgresql.log"),
                      "-o", options, "-w", "start")
        for name in (DB_NAME, OPTUNA_DB):
            made = self._run("createdb", "-h", str(self.folder), "-p", str(self.port),
                             "-U", "postgres", name, check=False)
            if made.returncode and "already exists" not in made.stderr:
                raise SystemExit(f"createdb failed: {made.stderr.strip()}")

    def stop(self) -> None:
        if (self.folder / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.folder), "-m", "fast", "-w", "stop", check=False)


def with_driver(url: str) -> str:
    """``postgresql://`` with the psycopg2 driver (SQLAlchemy 2.1 would pick psycopg 3)."""
    return "postgresql+psycopg2://" + url[len("postgresql://"):] \
        if url.startswith("postgresql://") else url


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120,
                 path: str = "/health") -> bool:
    """Poll ``url`` + ``path`` (the server's health check) until it answers 200, the process
    exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the server's process group (the CLI, uvicorn and its workers), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def app_name(extra: list[str]) -> list[str]:
    """``--app-name model-training`` unless ``extra`` names an app (MLflow runs one)."""
    named = any(a == "--app-name" or a.startswith("--app-name=") for a in extra)
    return [] if named else ["--app-name", UI_APP]


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db-url", default=os.environ.get("SEQ2SEQ_DB_URL"),
                        help="an existing PostgreSQL database (default: $SEQ2SEQ_DB_URL, else "
                             "a local cluster in DIR/postgres)")
    parser.add_argument("--dir", type=Path, default=Path(
        os.environ.get("SEQ2SEQ_OUTPUT_DIR", "outputs")) / "server",
        help="the local cluster (postgres/) and the artifacts (artifacts/)")
    parser.add_argument("--workers", default="2", help="uvicorn workers (mlflow's default: 4)")
    args, extra = parser.parse_known_args(argv)

    if args.host not in LOOPBACK:
        print(f"warning: binding to {args.host}: anyone who can reach this port can read, "
              "write and delete every run; MLflow has no authentication by default. Put it "
              "behind an authenticating proxy or add `--app-name basic-auth` (MLflow's "
              "basic-auth app).", file=sys.stderr)
    # Ctrl-C or SIGTERM: server first, then the cluster (also when started in the background,
    # where the shell leaves SIGINT ignored).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    cluster = None if args.db_url else LocalPostgres(args.dir / "postgres")
    artifacts = (args.dir / "artifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        if cluster:
            cluster.start()
        db_url = with_driver(args.db_url) if args.db_url else cluster.url
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db_url,
               "--artifacts-destination", str(artifacts), "--host", args.host,
               "--port", str(args.port), "--workers", args.workers, *app_name(extra), *extra]
        # MLflow's job runner (GenAI evaluation jobs, 7 more processes) is not used here.
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
        server = subprocess.Popen(cmd, env=env, start_new_session=True)
        url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
        if wait_healthy(url, server):
            where = f"PostgreSQL in {cluster.folder}" if cluster else "the given database"
            print(f"MLflow server ready: {url} (runs in {where}, artifacts in {artifacts}); "
                  f"log to it with logger.tracking_uri={url}; Ctrl-C stops it", flush=True)
            if cluster:
                print(f"Optuna studies: SEQ2SEQ_OPTUNA_STORAGE='{cluster.url_of(OPTUNA_DB)}' "
                      "for make sweep SWEEP=optuna, STUDIES= for make dashboard", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            stop_group(server)
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
