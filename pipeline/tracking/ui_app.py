"""The MLflow UI opening in Model training mode: an MLflow app (``--app-name model-training``).

MLflow's UI has two modes, GenAI and Model training. A page takes its mode from the address's
``workflowType`` parameter, else from the browser's own setting (``localStorage``, written
only by the switch at the top of the sidebar), else GenAI. The links this project prints
carry the parameter, but the UI's own links (a run's name in the runs table, say) drop it,
so a browser that never used the switch shows a training run as an evaluation run.

This app is MLflow's own server with one change: the page that starts the UI (``index.html``,
served at ``/``) first sets that setting to Model training where the browser has none yet. A
choice made with the switch is kept; nothing else is served differently and no route is
added. ``mlflow server``/``mlflow ui`` load it by the name this project registers in the
``mlflow.app`` entry point group (``make ui`` and ``make server`` pass
``--app-name model-training``), the way MLflow loads its own ``basic-auth`` app.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator

from flask import Flask, Response, request
from mlflow.environment_variables import _MLFLOW_SGI_NAME
from mlflow.server import app as mlflow_app
from mlflow.server import serve as mlflow_page

NAME = "model-training"
# The UI's setting: key ``mlflow.workflowType``, version 1, stored as ``<key>_v<version>``
# holding the JSON of the mode (the bundle's useLocalStorage; "" or absent reads as unset).
STORAGE_KEY = "mlflow.workflowType_v1"
MODE = "machine_learning"
SCRIPT = (
    f"<script>try{{var k={json.dumps(STORAGE_KEY)};"
    f"localStorage.getItem(k)||localStorage.setItem(k,{json.dumps(json.dumps(MODE))})}}"
    "catch(e){}</script>"
).encode()
# Request headers that let the index route answer 304 or part of the file: taken off before
# MLflow reads the file, so the page is always rewritten whole; the rewritten page's own ETag
# answers them instead (a copy cached before this app ran is then replaced, not revalidated).
CONDITIONAL = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH",
               "HTTP_IF_UNMODIFIED_SINCE", "HTTP_RANGE", "HTTP_IF_RANGE")
_FIRST_SCRIPT = re.compile(rb"<script\b", re.IGNORECASE)
_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)


def with_default(page: bytes) -> bytes:
    """``page`` with :data:`SCRIPT` before its first ``<script`` (the bundle's), else before
    ``</head>``, else at the start."""
    found = _FIRST_SCRIPT.search(page) or _HEAD_END.search(page)
    at = found.start() if found else 0
    return page[:at] + SCRIPT + page[at:]


@contextlib.contextmanager
def _unconditional(environ: dict) -> Iterator[None]:
    saved = {name: environ.pop(name) for name in CONDITIONAL if name in environ}
    try:
        yield
    finally:
        environ.update(saved)


def _index_with_default(serve: Callable[..., Response]) -> Callable[..., Response]:
    def serve_with_default(*args, **kwargs) -> Response:
        with _unconditional(request.environ):
            response = serve(*args, **kwargs)
        if response.status_code != 200 or response.mimetype != "text/html":
            return response  # MLflow's note that the UI is not built, say
        response.direct_passthrough = False  # read the file MLflow opened
        response.set_data(with_default(response.get_data()))
        response.add_etag(overwrite=True)  # the page's one validator: no date, no ranges
        for header in ("Last-Modified", "Accept-Ranges"):
            response.headers.pop(header, None)
        return response.make_conditional(request)

    serve_with_default.model_training_default = True
    return serve_with_default


def add_default(app: Flask) -> Flask:
    """Wrap MLflow's view of the UI's page (``mlflow.server.serve``, at ``/`` after MLflow's
    static prefix) in ``app`` so the page carries :data:`SCRIPT`; calling it again changes
    nothing. The route stays MLflow's: no address is added or moved."""
    views = app.view_functions
    if any(getattr(view, "model_training_default", False) for view in views.values()):
        return app
    endpoints = [endpoint for endpoint, view in views.items() if view is mlflow_page]
    if not endpoints:
        raise RuntimeError("this MLflow serves its UI's page from no view mlflow.server.serve")
    for endpoint in endpoints:
        views[endpoint] = _index_with_default(mlflow_page)
    return app


def create_app(app: Flask = mlflow_app):
    """The ``mlflow.app`` factory: MLflow's Flask app with the default, served the way
    ``mlflow server`` serves its own (wrapped in MLflow's FastAPI app under uvicorn, the
    Flask app itself under gunicorn or waitress)."""
    add_default(app)
    # mlflow server tells an app which server runs it (its basic-auth app reads this too).
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        # Imported only under uvicorn.
        from mlflow.server.fastapi_app import create_fastapi_app  # noqa: PLC0415

        return create_fastapi_app(app)
    return app
