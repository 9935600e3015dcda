"""The MLflow UI as `make ui` serves it, over a tiny sweep, driven in headless Chromium."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import psutil
import pytest
from mlflow import MlflowClient

from pipeline.tracking.server import stop_group, wait_healthy
from pipeline.tracking.store import run_link
from tests.helpers import ROOT, TINY, free_port, run_cli

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
# No network here: keep Chromium from reaching out (updates, sync, QUIC probes).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WAIT_S = 60  # per wait: the server and the single-page app start slowly on busy cores
WAIT_MS = WAIT_S * 1000
SHOTS = ROOT / "outputs" / "ui"
# Mark the assistant panel as already shown and closed, so it does not cover the page.
CLOSE_ASSISTANT = """
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None,
                       reason="playwright (Python client) not installed: pip install -e '.[dev]'"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} not installed (make system-deps: Debian's chromium)"),
    pytest.mark.skipif(shutil.which("make") is None,
                       reason="make not installed: the UI is started as `make ui` starts it"),
]


def ui_commands(curdir: Path, port: int) -> tuple[list[str], list[str]]:
    """The two commands `make ui` runs, read with `make -n` and CURDIR pointed at ``curdir``
    (so its store is ``curdir/outputs``), run by this interpreter: the store's opening (which
    prints each experiment's link) and the UI."""
    dry = subprocess.run(
        ["make", "-n", "-s", "ui", f"CURDIR={curdir}", f"PORT={port}", "STAMP="],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.replace("\\\n", " ").splitlines()
    (store,) = [shlex.split(ln) for ln in lines if "pipeline.tracking.store" in ln]
    (ui,) = [shlex.split(ln) for ln in lines if "mlflow ui" in ln]
    return ([sys.executable, *store[store.index("-m"):]],
            [sys.executable, "-m", "mlflow", *ui[ui.index("ui"):]])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The folder `make ui` runs in, shared by this module's tests."""
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="module")
def sweep(folder):
    """A 2-candidate x 2-seed sweep (model.depth=1,2 seeds=2) into ``folder/outputs``, as
    `make ui` finds it: the parent, its 4 replicates (``children``, by name) and the best
    candidate's ensemble, 6 runs."""
    result = run_cli("-m", *TINY, "model.depth=1,2", "seeds=2", output_dir=folder / "outputs")
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{folder}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name("seq2seq-reverse")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep"]
    under = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    children = {r.info.run_name: r for r in under if r.data.tags.get("role") != "ensemble"}
    assert sorted(children) == [f"model.depth={d} seed={s}" for d in (1, 2) for s in (42, 43)]
    assert len(runs) == 6 and len(under) == 5
    return experiment, parent, children


@pytest.fixture(scope="module")
def ui(folder, sweep):
    """`make ui` on a free local port over the sweep's store; yields (base URL, port, the
    printed link to the experiment's runs)."""
    port = free_port()
    store, command = ui_commands(folder, port)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--app-name") + 1] == "model-training"  # ui_app
    opened = subprocess.run(store, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert opened.returncode == 0, opened.stderr[-2000:]
    (runs_link,) = [ln.split(": ", 1)[1] for ln in opened.stdout.splitlines()
                    if ln.startswith("seq2seq-reverse: ")]
    log = (folder / "ui.log").open("w")
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no GenAI job workers
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(base, proc, WAIT_S), (folder / "ui.log").read_text()[-3000:]
        yield base, port, runs_link
    finally:
        stop_group(proc, grace=20)  # the server forks uvicorn workers: its whole group
        log.close()


def assert_loopback_only(port: int) -> None:
    """Listening on 127.0.0.1 only: no other local address accepts a connection."""
    listening = {c.laddr.ip for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening == {"127.0.0.1"}
    others = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")}
    for address in others:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=5).close()


@contextlib.contextmanager
def browser_page(width: int = 1600, height: int = 1000, init_script: str | None = CLOSE_ASSISTANT):
    """A page in a fresh headless Chromium (nothing kept from earlier visits); by default
    with the MLflow UI's Assistant panel kept closed."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(WAIT_MS)
            if init_script:
                page.add_init_script(init_script)
            yield page
        finally:
            browser.close()


def toggle_column(page, name: str) -> None:
    """Toggle one column in the runs table's column selector (already open)."""
    page.get_by_placeholder("Search columns").fill(name)
    title = page.locator(".du-bois-light-tree-title", has_text=re.compile(f"^{re.escape(name)}$"))
    page.get_by_test_id("column-selector-tree").locator(".du-bois-light-tree-treenode").filter(
        has=title).locator(".du-bois-light-tree-checkbox").click()


def test_ui_lists_the_sweep_and_opens_a_childs_attention_heatmap(sweep, ui):
    experiment, parent, children = sweep
    base, port, runs_link = ui
    assert_loopback_only(port)
    eid = experiment.experiment_id
    assert runs_link == f"{base}/#/experiments/{eid}?workflowType=machine_learning"
    child = children["model.depth=1 seed=42"]
    heatmap = (Path(child.info.artifact_uri.removeprefix("file://")) / "plots" /
               "attention_0.png").read_bytes()
    width, height = struct.unpack(">II", heatmap[16:24])  # the PNG's IHDR
    SHOTS.mkdir(parents=True, exist_ok=True)

    with browser_page() as page:
        # The link `make ui` prints opens the experiment on its training runs (not on
        # MLflow 3's GenAI overview): the parent, expanded to show its children.
        page.goto(runs_link)
        parent_link = page.get_by_role("link", name=parent.info.run_name, exact=True)
        expect(parent_link).to_be_visible(timeout=WAIT_MS)
        assert f"/experiments/{eid}/runs" in page.url
        assert parent.info.run_name.startswith("sweep ")
        assert parent_link.get_attribute("href").endswith(f"/runs/{parent.info.run_id}")
        expect(page.get_by_text("6 matching runs")).to_be_visible(timeout=WAIT_MS)
        page.locator(".ag-cell").filter(has=parent_link).get_by_role("button").click()
        for name, run in children.items():
            link = page.get_by_role("link", name=name, exact=True)
            expect(link).to_be_visible(timeout=WAIT_MS)
            assert link.get_attribute("href").endswith(f"/runs/{run.info.run_id}")

        # Swap the dataset column for the swept param and the sweep's metric.
        page.get_by_role("button", name="Columns", exact=True).click()
        for column in ("Dataset", "model.depth", "val/seq_acc", "test/seq_acc"):
            toggle_column(page, column)
        page.keyboard.press("Escape")
        for column in ("params.`model.depth`", "metrics.`val/seq_acc`",
                       "metrics.`test/seq_acc`"):
            expect(page.locator(f'.ag-header-cell[col-id="{column}"]')).to_be_visible(
                timeout=WAIT_MS)
        page.locator('.ag-header-cell[col-id="attributes.`Run Name`"] '
                     ".ag-header-cell-resize").dblclick()  # fit the full run names
        page.screenshot(path=SHOTS / "experiment.png")

        # Grouped by the candidate tag: 2 groups of 2 replicates (the parent has none).
        page.get_by_role("button", name="Group by").click()
        page.get_by_role("menuitemcheckbox", name="candidate_name", exact=True).click()
        page.keyboard.press("Escape")
        for depth in (1, 2):
            group = page.locator(".ag-row", has_text=f"Group: model.depth={depth}")
            expect(group).to_be_visible(timeout=WAIT_MS)
            expect(group).to_contain_text("2")
            for seed in (42, 43):
                expect(page.get_by_role("link", name=f"model.depth={depth} seed={seed}",
                                        exact=True)).to_be_visible(timeout=WAIT_MS)
        page.screenshot(path=SHOTS / "grouped.png")

        # A child's artifacts: plots/ -> attention_0.png is fetched and displayed.
        page.goto(runs_link)
        page.get_by_role("link", name="model.depth=1 seed=42", exact=True).click()
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("plots", exact=True).click()
        with page.expect_response(
            lambda r: "get-artifact" in r.url and "plots/attention_0.png" in unquote(r.url),
            timeout=WAIT_MS,
        ) as fetched:
            page.get_by_text("attention_0.png", exact=True).click()
        response = fetched.value
        assert response.status == 200
        assert response.headers["content-type"] == "image/png"
        assert page.request.get(response.url).body() == heatmap  # the run's own file
        assert child.info.run_id in response.url
        expect(page.get_by_text("plots/attention_0.png").first).to_be_visible(timeout=WAIT_MS)
        page.wait_for_function(  # an <img> that shows the fetched PNG, at its size
            "([w, h]) => [...document.images].some(i => i.src.startsWith('blob:') &&"
            " i.complete && i.naturalWidth === w && i.naturalHeight === h &&"
            " i.getBoundingClientRect().width > 0)",
            arg=[width, height], timeout=WAIT_MS,
        )
        page.screenshot(path=SHOTS / "heatmap.png")


def stored_mode(page) -> str | None:
    """The browser's own mode setting, as the UI's sidebar switch writes it (JSON)."""
    return page.evaluate("localStorage.getItem('mlflow.workflowType_v1')")


def in_model_training_mode(page) -> None:
    """The run page as a training run's, in the UI's model-training mode: the breadcrumb
    leads to the runs, the sidebar lists Runs (highlighted) and Models, no evaluation pages."""
    crumb = page.get_by_test_id("experiment-observatory-link-runs")
    expect(crumb).to_have_text("Runs", timeout=WAIT_MS)
    nav = page.locator("nav")
    expect(nav.get_by_role("link", name="Runs", exact=True)).to_have_attribute(
        "aria-current", "page", timeout=WAIT_MS)
    expect(nav.get_by_role("link", name="Models", exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(nav.get_by_role("link", name="Evaluation runs")).to_have_count(0)
    expect(page.get_by_text("Evaluations", exact=True)).to_have_count(0)


def in_genai_mode(page) -> None:
    """The run page in the UI's GenAI mode: the sidebar highlights Evaluation runs."""
    nav = page.locator("nav")
    expect(nav.get_by_role("link", name="Evaluation runs", exact=True)).to_have_attribute(
        "aria-current", "page", timeout=WAIT_MS)
    expect(nav.get_by_role("link", name="Runs", exact=True)).to_have_count(0)


def test_the_sweeps_parent_opened_from_the_runs_table_shows_its_report(sweep, ui):
    """A user opens the parent run from the runs table, by clicking, as a training run
    (the UI's own run links drop the address's mode; `make ui` makes Model training the
    mode of a browser that has not chosen one), and finds the candidates' table and the
    plots in summary.html."""
    experiment, parent, children = sweep
    base, _, runs_link = ui
    eid = experiment.experiment_id
    names = sorted({c.data.tags["candidate_name"] for c in children.values()})
    SHOTS.mkdir(parents=True, exist_ok=True)

    with browser_page() as page:
        # The link printed at the end of the sweep: the parent's page in model training.
        page.goto(run_link(base, eid, parent.info.run_id))
        expect(page.get_by_test_id("runs-header")).to_have_text(parent.info.run_name,
                                                                timeout=WAIT_MS)
        in_model_training_mode(page)

    with browser_page() as page:  # a browser whose UI switch was never used
        page.goto(runs_link)
        page.get_by_role("link", name=parent.info.run_name, exact=True).click()
        expect(page.get_by_test_id("runs-header")).to_have_text(parent.info.run_name,
                                                                timeout=WAIT_MS)
        assert "workflowType" not in page.url  # the table's link: the mode is the browser's
        in_model_training_mode(page)
        assert stored_mode(page) == '"machine_learning"'

        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("summary.html", exact=True).click()
        report = page.frame_locator("iframe.mlflow-html-iframe")
        table = report.locator("table.candidates")
        expect(table).to_be_visible(timeout=WAIT_MS)
        for name in names:
            expect(table).to_contain_text(name)
        expect(table).to_contain_text(" ± ")
        expect(report.get_by_text("Candidates ranked by mean val/seq_acc")).to_be_visible()
        grid = report.locator('img[alt="plots/grid.png"]')
        expect(grid).to_be_visible(timeout=WAIT_MS)
        assert grid.evaluate("i => i.complete && i.naturalWidth > 0")
        in_model_training_mode(page)
        page.screenshot(path=SHOTS / "summary.png")

        # The same table in the UI's table view.
        page.get_by_text("candidates.json", exact=True).click()
        expect(page.get_by_text("val/seq_acc mean", exact=True)).to_be_visible(timeout=WAIT_MS)
        for name in names:
            expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=WAIT_MS)


def test_a_mode_chosen_with_the_switch_is_kept(sweep, ui):
    """The default is only a default: a user who switches the sidebar to GenAI keeps GenAI,
    on reloads and on the UI's own links."""
    experiment, parent, _ = sweep
    base, _, runs_link = ui
    run_page = f"{base}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}"

    with browser_page() as page:  # a browser whose UI switch was never used
        page.goto(runs_link)
        page.get_by_role("link", name=parent.info.run_name, exact=True).click()
        expect(page.get_by_test_id("runs-header")).to_have_text(parent.info.run_name,
                                                                timeout=WAIT_MS)
        in_model_training_mode(page)
        page.get_by_role("button", name="GenAI", exact=True).click()  # the sidebar's switch
        page.wait_for_function("localStorage.getItem('mlflow.workflowType_v1') === "
                               "JSON.stringify('genai')", timeout=WAIT_MS)
        page.reload()
        page.goto(run_page)  # no mode in the address: the browser's own
        page.reload()
        expect(page.get_by_test_id("runs-header")).to_have_text(parent.info.run_name,
                                                                timeout=WAIT_MS)
        in_genai_mode(page)
        assert stored_mode(page) == '"genai"'
