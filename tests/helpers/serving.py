"""A model served as a user serves it: ``mlflow models serve`` on a free local port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.tracking.server import wait_healthy
from tests.helpers import free_port


@contextmanager
def served(model_uri: str, tracking_uri: str, start_timeout: float = 120
           ) -> Iterator[Callable[[dict], tuple[int, dict]]]:
    """Serve ``model_uri`` from the store at ``tracking_uri``; yields ``post(body)`` ->
    (HTTP status, JSON answer) for ``/invocations``."""
    port = free_port()
    # mlflow starts uvicorn from PATH: the one installed beside this Python (make serve does
    # the same).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def post(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(f"{base}/invocations", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    try:
        assert wait_healthy(base, server, start_timeout, path="/ping"), (
            "the model server did not start in time"
            if server.poll() is None else server.stderr.read().decode()[-2000:])
        yield post
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
