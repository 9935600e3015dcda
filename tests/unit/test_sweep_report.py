"""The sweep parent's report: the grid plot's axes, the candidates' metrics and table, the HTML
page, what report() returns."""

import base64
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.utils.validation import _validate_metric_name, _validate_tag_name

from pipeline.tracking import plots, report_html
from pipeline.tracking.sweep_report import (
    SweepResult,
    candidate_metrics,
    candidates_of,
    candidates_table,
    formatted,
    log_candidates,
    report,
    summary_table,
)


def fake_run(run_id: str, candidate: str, **metrics):
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, run_name=run_id, status="FINISHED"),
        data=SimpleNamespace(tags={"candidate": candidate, "candidate_name": candidate},
                             metrics=metrics))


def ranked_table(scores: dict[str, list[float]]) -> pd.DataFrame:
    """summary_table over replicates whose val and test accuracy are ``scores``."""
    runs = [fake_run(f"{name}{i}", name, **{"val/seq_acc": v, "test/seq_acc": v})
            for name, values in scores.items() for i, v in enumerate(values)]
    return summary_table(candidates_of(runs), "val/seq_acc", "max")[0]


def test_the_grid_axis_is_fitted_to_the_values_so_close_means_stay_apart():
    low, high = plots.fitted_limits([0.998, 1.0], [0.997, 0.9995], [0.999, 1.0005])
    assert 0.99 < low < 0.997 and 1.0005 < high < 1.01  # not from zero
    assert (high - low) == pytest.approx(0.0035 * 1.16)  # the span and 8 % either side
    assert plots.fitted_limits([1.0, 1.0], [np.nan] * 2, [np.nan] * 2) == pytest.approx(
        (0.95, 1.05))  # all equal: a window around the value
    assert plots.fitted_limits([np.nan], [np.nan], [np.nan]) == (0.0, 1.0)
    assert plots.decimals([0.998, 1.0]) == 3 and plots.decimals([0.9981, 0.9983]) == 4


def test_the_grid_is_a_dot_plot_with_a_panel_per_metric_on_its_own_scale():
    labels = ["a", "b", "c"]
    fig = plots.grid_dots(labels, {
        "val/seq_acc": ([1.0, 0.998, 0.99], [0.999, 0.997, np.nan], [1.001, 0.999, np.nan]),
        "test/loss": ([0.02, 0.03, 0.05], [0.01, 0.02, np.nan], [0.03, 0.04, np.nan])})
    acc, loss = [ax for ax in fig.axes if ax.get_visible()]
    assert (acc.get_title(), loss.get_title()) == ("val/seq_acc", "test/loss")
    assert acc.get_xlim() == pytest.approx(
        plots.fitted_limits([1.0, 0.998, 0.99], [0.999, 0.997], [1.001, 0.999]))
    assert loss.get_xlim() == pytest.approx(plots.fitted_limits([0.02, 0.03, 0.05], [0.01, 0.02],
                                                                [0.03, 0.04]))
    dots = acc.lines[0]  # the means, one row per candidate, no bars
    assert list(dots.get_xdata()) == [1.0, 0.998, 0.99] and list(dots.get_ydata()) == [0, 1, 2]
    assert not acc.patches
    assert [t.get_text() for t in acc.get_yticklabels()] == labels
    assert acc.get_ylim()[0] > acc.get_ylim()[1]  # the best on top
    assert {t.get_text() for t in acc.texts} == {"1.000", "0.998", "0.990"}
    plots.plt.close(fig)


def test_the_parent_gets_each_candidates_mean_and_half_width_by_rank():
    table = ranked_table({"b": [0.5, 0.6, 0.55], "a": [0.9, 0.92, 0.91], "c": [0.7]})
    values = candidate_metrics(table, "val/seq_acc")
    assert list(table.candidate) == ["a", "c", "b"]
    assert values["candidate/1/val/seq_acc/mean"] == pytest.approx(0.91)
    assert values["candidate/3/test/seq_acc/mean"] == pytest.approx(0.55)
    # Student t, 2 degrees of freedom: 4.303 * 0.01 / sqrt(3)
    assert values["candidate/1/val/seq_acc/half_width"] == pytest.approx(
        4.3027 * 0.01 / np.sqrt(3), rel=1e-4)
    assert "candidate/2/val/seq_acc/mean" in values
    assert "candidate/2/val/seq_acc/half_width" not in values  # one replicate
    for key in values:
        _validate_metric_name(key)

    logged = []

    class Client:
        def log_batch(self, run_id, metrics=(), tags=()):
            logged.append((run_id, list(metrics), list(tags)))

    log_candidates(Client(), "parent", table, "val/seq_acc")
    metrics = {m.key: m.value for _, ms, _ in logged for m in ms}
    tags = {t.key: t.value for _, _, ts in logged for t in ts}
    assert metrics == values
    assert tags == {"candidate/1": "a", "candidate/2": "c", "candidate/3": "b"}
    for key in tags:
        _validate_tag_name(key)
    assert {run_id for run_id, _, _ in logged} == {"parent"}


def test_the_candidates_table_for_the_ui_has_rank_means_and_half_widths():
    table = ranked_table({"a": [0.9, 0.92, 0.91], "b": [0.5, 0.6, 0.55]})
    frame = candidates_table(table, "val/seq_acc")
    assert list(frame.columns) == ["rank", "candidate", "n", "replicates", "status",
                                   "val/seq_acc mean", "val/seq_acc half_width",
                                   "test/seq_acc mean", "test/seq_acc half_width"]
    assert list(frame["rank"]) == [1, 2] and list(frame.candidate) == ["a", "b"]


def test_the_html_page_has_the_table_the_words_and_the_plots_inline():
    table = ranked_table({"a<b": [0.998, 0.9985, 0.9975], "c": [1.0, 1.0, 1.0]})
    fig = plots.grid_dots(list(table.candidate), {"val/seq_acc": (
        table["val/seq_acc"], table["val/seq_acc ci_low"], table["val/seq_acc ci_high"])})
    png = plots.png(fig)
    plots.plt.close(fig)
    html = report_html.page("Sweep x", formatted(table, "val/seq_acc"), "Ranked by val.",
                            ["c beats a<b by 0.2 points."], {"plots/grid.png": png},
                            [("champion", "models:/m@champion")])
    assert "<table" in html and "1.000 ± 0.000" in html and "0.998 ± 0.001" in html
    assert "a&lt;b" in html and "a<b" not in html  # escaped
    assert "<li>c beats a&lt;b by 0.2 points.</li>" in html
    assert "models:/m@champion" in html
    (data,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert base64.b64decode(data) == png and png.startswith(b"\x89PNG")


@pytest.fixture
def store(tmp_path):  # creating the sqlite store takes seconds
    """A sqlite store with a sweep parent and 2 candidates x 2 replicates, no models."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, run_name="sweep x", tags={"role": "sweep"})
    runs = []
    for name, values in {"d1": [0.5, 0.6], "d2": [0.9, 0.95]}.items():
        for i, value in enumerate(values):
            run = client.create_run(experiment, run_name=f"{name} {i}", tags={
                "candidate": name, "candidate_name": name, "monitor": "val/seq_acc",
                "monitor_mode": "max", "mlflow.parentRunId": parent.info.run_id})
            for epoch, v in enumerate([value / 2, value]):
                client.log_metric(run.info.run_id, "val/seq_acc", v, step=epoch)
            client.log_metric(run.info.run_id, "test/seq_acc", value)
            client.set_terminated(run.info.run_id)
            runs.append(client.get_run(run.info.run_id))
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    return client, parent.info.run_id, runs, sweep_dir


@pytest.mark.slow
def test_report_returns_the_result_and_logs_the_page_table_and_metrics(store):
    client, parent_id, runs, sweep_dir = store
    result = report(client.tracking_uri, parent_id, "e", runs, sweep_dir)
    assert isinstance(result, SweepResult)
    assert list(result.table.candidate) == ["d2", "d1"] and result.best == "d2"
    assert result.table.equals(pd.read_csv(sweep_dir / "summary.csv"))
    assert result.summary_path == sweep_dir / "summary.md" and result.summary_path.exists()
    assert result.champion_uri is None  # no logged models to register
    assert len(result.sentences) == 1 and "d2" in result.sentences[0]
    assert "0.925 ± " in result.formatted_table().to_string()

    parent = client.get_run(parent_id)
    assert parent.data.metrics["candidate/1/val/seq_acc/mean"] == pytest.approx(0.925)
    assert parent.data.metrics["candidate/2/test/seq_acc/mean"] == pytest.approx(0.55)
    assert parent.data.tags["candidate/1"] == "d2"
    logged = {a.path for a in client.list_artifacts(parent_id)}
    assert {"summary.html", "candidates.json", "summary.md", "plots"} <= logged
    html = (sweep_dir / "summary.html").read_text()
    assert "d2" in html and result.sentences[0].split(" (")[0] in html
    assert "data:image/png;base64," in html
    assert {"path": "candidates.json", "type": "table"} in json.loads(
        parent.data.tags["mlflow.loggedArtifacts"])

    report(client.tracking_uri, parent_id, "e", runs, sweep_dir)  # a resumed sweep's report
    table = json.loads(Path(client.download_artifacts(parent_id, "candidates.json",
                                                      str(sweep_dir))).read_text())
    assert [row[1] for row in table["data"]] == ["d2", "d1"]  # replaced, not appended
