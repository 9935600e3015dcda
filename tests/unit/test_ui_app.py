"""The ``model-training`` MLflow app: the UI's page sets Model training as the browser's mode
before the bundle runs, where none is set; every other address is served as MLflow serves it."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest
from flask import Flask, send_from_directory
from mlflow.server import app as mlflow_app
from mlflow.utils.plugins import get_entry_points

from pipeline.tracking import ui_app
from pipeline.tracking.server import app_name

BUILD = Path(mlflow_app.static_folder)
INDEX = (BUILD / "index.html").read_bytes()
(BUNDLE,) = (BUILD / "static" / "js").glob("main.*.js")


@pytest.fixture(scope="module")
def client():
    return ui_app.create_app().test_client()


def first_script(page: bytes) -> int:
    return re.search(rb"<script\b", page).start()


def test_the_page_sets_the_mode_before_the_bundles_script(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    body = page.get_data()
    bundle = re.search(rb'<script defer="defer" src="static-files/static/js/main\.\w+\.js">',
                       INDEX).group()
    assert body.index(ui_app.SCRIPT) == first_script(body) < body.index(bundle)
    assert body.replace(ui_app.SCRIPT, b"", 1) == INDEX  # nothing else changed
    assert page.headers["Content-Length"] == str(len(body))


def test_other_addresses_are_served_unchanged(client):
    bundle = client.get(f"/static-files/static/js/{BUNDLE.name}")
    assert bundle.status_code == 200
    assert bundle.get_data() == BUNDLE.read_bytes()
    bundle.close()
    assert client.get("/health").get_data() == b"OK"
    assert client.get("/version").status_code == 200
    assert client.get("/no-such-page").status_code == 404


def test_the_page_is_revalidated_by_its_own_etag(client):
    etag = client.get("/").headers["ETag"]
    assert client.get("/", headers={"If-None-Match": etag}).status_code == 304
    # A copy of MLflow's own page, cached before: answered with the page, not 304.
    with mlflow_app.test_request_context("/"):
        original = send_from_directory(BUILD, "index.html").headers
    for stale in ({"If-None-Match": original["ETag"]},
                  {"If-None-Match": original["ETag"], "If-Modified-Since": original["Date"]},
                  {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"},
                  {"Range": "bytes=0-10"}):
        page = client.get("/", headers=stale)
        assert page.status_code == 200, stale
        assert ui_app.SCRIPT in page.get_data()


def test_wrapping_twice_adds_one_script(client):
    ui_app.add_default(mlflow_app)
    assert client.get("/").get_data().count(b"<script>") == 1


def test_an_app_without_mlflows_page_is_refused():
    with pytest.raises(RuntimeError, match="mlflow.server.serve"):
        ui_app.add_default(Flask("other"))


def test_the_script_goes_before_the_first_script_else_the_head_end():
    assert ui_app.with_default(b"<head><SCRIPT src=a></SCRIPT><script></script></head>") == (
        b"<head>" + ui_app.SCRIPT + b"<SCRIPT src=a></SCRIPT><script></script></head>")
    assert ui_app.with_default(b"<head><title>t</title></head><body>") == (
        b"<head><title>t</title>" + ui_app.SCRIPT + b"</head><body>")
    assert ui_app.with_default(b"text") == ui_app.SCRIPT + b"text"


def test_the_script_writes_the_setting_the_bundle_reads():
    """The bundle's setting is ``useLocalStorage({key: "mlflow.workflowType", version: 1})``,
    stored under ``<key>_v<version>`` as JSON, unset when empty; the script writes the JSON
    of Model training's value there only when the setting is empty."""
    bundle = BUNDLE.read_text()
    assert 'key:"mlflow.workflowType",version:1,initialValue:' in bundle
    assert 'e.MACHINE_LEARNING="machine_learning"' in bundle
    assert "const o=(e,t)=>`${e}_v${t}`" in bundle
    assert "const e=window.localStorage.getItem(i);return e?JSON.parse(e):r" in bundle
    assert ui_app.STORAGE_KEY == "mlflow.workflowType_v1"
    script = ui_app.SCRIPT.decode()
    assert 'var k="mlflow.workflowType_v1";' in script
    assert 'localStorage.getItem(k)||localStorage.setItem(k,"\\"machine_learning\\"")' in script


def test_under_uvicorn_it_is_mlflows_fastapi_app_around_the_page(monkeypatch):
    monkeypatch.setenv("_MLFLOW_SGI_NAME", "uvicorn")
    app = ui_app.create_app()
    replies: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        replies.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/",
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 5000), "headers": [(b"host", b"127.0.0.1:5000")]}
    anyio.run(app, scope, receive, send)
    assert replies[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in replies[1:])
    assert body.index(ui_app.SCRIPT) == first_script(body)


def test_the_app_is_registered_for_mlflow_server():
    apps = {e.name: e.value for e in get_entry_points("mlflow.app")}
    assert apps[ui_app.NAME] == "pipeline.tracking.ui_app:create_app"


def test_make_server_runs_it_unless_another_app_is_named():
    assert app_name(["--workers", "4"]) == ["--app-name", "model-training"]
    assert app_name(["--app-name", "basic-auth"]) == []
    assert app_name(["--app-name=basic-auth"]) == []
