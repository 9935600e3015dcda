"""What a user sees of ``make sweep`` and ``make train``: the project's lines, no library
chatter, results on stdout and where they are, every error on stderr."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")

# What a library's line looks like on a console: MLflow's and Python's logging formats,
# warnings, Lightning's device and seed lines, progress bars, MLflow's printed notices.
LIBRARY = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING)|\]\[(INFO|WARNING)\]"
                     r"|Warning:|warnings.warn|GPU available|Seed set|Downloading artifacts"
                     r"|Successfully registered|Created version|Test metric|Traceback|\[HYDRA\]")


def make(*args: str, output_dir, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(output_dir)}
    env.pop("SEQ2SEQ_VERBOSE", None)
    return subprocess.run(["make", "--no-print-directory", *args, "INSTALL=0",
                           f"PY={sys.executable}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_sweeps_console_is_its_progress_table_and_links(tmp_path):
    done = make("sweep", "SEEDS=2", "JOBS=2", "ARGS=debug=fast data.max_len=5 "
                "data.vocab_size=6 model=simple,attention model.depth=1", output_dir=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out, err = done.stdout.splitlines(), done.stderr.splitlines()
    console = out + err
    assert len(console) <= 20, "\n".join(console)
    assert not [ln for ln in console if LIBRARY.search(ln)], "\n".join(console)
    replicates = [ln for ln in err if re.match(r"\d/4 ok ", ln)]
    assert len(replicates) == 4 and {ln.split()[0] for ln in replicates} == {
        "1/4", "2/4", "3/4", "4/4"}
    assert all(re.search(r"val/seq_acc \d\.\d{3}  test/seq_acc \d\.\d{3} in \d+ s$", ln)
               for ln in replicates)
    table = [ln for ln in out if ln.startswith("model=")]
    assert len(table) == 2 and table[0].rstrip().endswith("best")
    assert any(ln.startswith("champion: models:/seq2seq-reverse@champion") for ln in out)
    assert any(ln.startswith("sweep: ") and "#/experiments/" in ln for ln in out)


def test_a_failing_job_shows_its_one_error_line_and_the_sweep_fails(tmp_path):
    done = make("sweep", "SEEDS=1", "JOBS=2", "ARGS=debug=fast data.max_len=5 "
                "data.vocab_size=6 model=attention model.depth=1 optimizer.lr=0.003,inf",
                output_dir=tmp_path)
    assert done.returncode != 0
    console = done.stdout.splitlines() + done.stderr.splitlines()
    assert not [ln for ln in console if LIBRARY.search(ln)], "\n".join(console)
    (failed,) = [ln for ln in done.stderr.splitlines() if " FAILED " in ln]
    assert "optimizer.lr=inf" in failed and "loss" in failed
    assert any(ln.startswith("failed:   1 of 2 runs") for ln in done.stdout.splitlines())


def test_make_train_says_where_its_model_is_and_how_to_use_it(tmp_path):
    done = make("train", "ARGS=debug=fast data.max_len=5 data.vocab_size=6",
                output_dir=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [ln for ln in done.stderr.splitlines() if LIBRARY.search(ln)], done.stderr
    said = dict(ln.split(":", 1) for ln in done.stdout.splitlines() if ":" in ln)
    assert re.match(r"( loss \d\.\d{3}| seq_acc \d\.\d{3}| token_acc \d\.\d{3})+", said["test"])
    assert said["model"].strip().startswith("models:/seq2seq-reverse/1")
    assert said["run"].strip().split()[1].startswith("http://127.0.0.1:5000/#/experiments/")
    assert said["serve"].strip().startswith("make serve MODEL=models:/seq2seq-reverse/latest")
    predict = shlex.split(said["predict"])
    assert predict[:3] == ["python", "-m", "pipeline.predict"]
    predicted = subprocess.run([sys.executable, *predict[1:]], cwd=tmp_path, capture_output=True,
                               text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (line,) = predicted.stdout.splitlines()
    source = re.search(r'inputs=\["(.*)"\]', said["predict"]).group(1)
    assert line.startswith(f"{source}\t")
