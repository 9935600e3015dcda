"""optuna-dashboard as `make dashboard` serves it, over a study with a pruned trial, driven
in headless Chromium."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import optuna

from pipeline.tracking.server import stop_group, wait_healthy
from tests.helpers import ROOT, free_port
from tests.integration.test_ui import (
    SHOTS,
    WAIT_MS,
    WAIT_S,
    assert_loopback_only,
    browser_page,
    expect,
)
from tests.integration.test_ui import pytestmark as ui_marks

# The MLflow UI test's skips: no playwright, no Chromium, no make.
pytestmark = ui_marks


def dashboard_command(curdir: Path, port: int) -> list[str]:
    """The command `make dashboard` runs (read with `make -n`, CURDIR pointed at
    ``curdir``), run by this interpreter."""
    dry = subprocess.run(["make", "-n", "-s", "dashboard", f"CURDIR={curdir}",
                          f"DASHBOARD_PORT={port}", "STAMP="], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    (line,) = [shlex.split(ln) for ln in dry.stdout.splitlines() if "optuna_dashboard" in ln]
    return [sys.executable, *line[line.index("-m"):]]


def study_with_a_pruned_trial(storage: str) -> optuna.Study:
    """What a search leaves: two finished trials and one pruned after its first epoch."""
    study = optuna.create_study(study_name="seq2seq-reverse-sweep", storage=storage,
                                direction="maximize")
    lr = {"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    for curve, pruned in (([0.2, 0.5], False), ([0.1], True), ([0.3, 0.7], False)):
        trial = study.ask(lr)
        for epoch, value in enumerate(curve):
            trial.report(value, epoch)
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
    return study


def test_dashboard_shows_the_study_its_trials_and_the_pruned_one(tmp_path):
    (tmp_path / "outputs").mkdir()
    study = study_with_a_pruned_trial(f"sqlite:///{tmp_path}/outputs/optuna.db")
    port = free_port()
    command = dashboard_command(tmp_path, port)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(base, proc, WAIT_S, path="/api/meta"), \
            (tmp_path / "dashboard.log").read_text()[-3000:]
        assert_loopback_only(port)
        SHOTS.mkdir(parents=True, exist_ok=True)
        with browser_page(1400, 900, init_script=None) as page:
            page.goto(f"{base}/dashboard")
            link = page.get_by_text(study.study_name).first
            expect(link).to_be_visible(timeout=WAIT_MS)
            page.goto(f"{base}/dashboard/studies/{study._study_id}/trials")
            for number in range(3):
                expect(page.get_by_text(f"Trial {number}").first).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text("Pruned").first).to_be_visible(timeout=WAIT_MS)
            page.screenshot(path=SHOTS / "dashboard_trials.png")
    finally:
        stop_group(proc, grace=10)
        log.close()

