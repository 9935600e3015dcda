"""``make bench-peer``: the project against OpenNMT-py, the program a user would pick
instead, at the same model size on the same exported data.

Both train on the reverse task's splits, written out as space-separated symbols, for the
same number of training sequences with one torch thread each, alternated round by round;
the bench reports target tokens per second of training (validation and start-up excluded,
the first report window or epoch left out as warm-up) and exact-match accuracy on the test
split, greedy decoding.

OpenNMT-py 3.5.1 is installed with ``pip --no-deps`` into its own folder
(``<output_dir>/bench/peer/site``) and runs on this environment's torch; it imports spacy,
pyahocorasick and fasttext for transforms this bench does not use, which get empty modules
(:data:`RUNNER`).

Both encoders split the hidden size between the directions (64 + 64). What cannot be made
equal (:data:`UNEQUAL`, printed with the table): OpenNMT-py attends with the current decoder
output (Luong's order) and starts the decoder from the encoder's final state, the project's
attention model (Bahdanau's order, input feeding) starts it from zeros; OpenNMT-py keeps a
constant learning rate and tests its last step, the project (defaults) decays it on a
cosine and tests its best validation checkpoint; both sort pools of examples by length
before cutting batches, in pools of their own sizes; OpenNMT-py divides the summed loss by
the batch's sequences, the project by the sequences times the mean target length.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from pipeline.data.datamodule import Seq2SeqDataModule

PEER = "OpenNMT-py==3.5.1"
PEER_PACKAGES = [PEER, "configargparse", "pyonmttok"]
BATCH, HIDDEN, LR = 64, 128, 0.003
TARGET_RATIO = 1.5  # the project's target tokens per second over OpenNMT-py's
TASKS = {10: 10_000, 40: 20_000}  # max length -> training sequences (the reverse task)
RUNNER = """import sys, types
for name in ("spacy", "ahocorasick", "fasttext"):  # imported by transforms not used here
    sys.modules.setdefault(name, types.ModuleType(name))
from onmt.bin import build_vocab, train, translate
tool = sys.argv.pop(1)
{"build_vocab": build_vocab.main, "train": train.main, "translate": translate.main}[tool]()
"""
UNEQUAL = [
    "attention: OpenNMT-py mlp on the current output (Luong order), decoder started from "
    "the encoder state; project additive with input feeding (Bahdanau order), no bridge",
    "learning rate: OpenNMT-py Adam 0.003 constant, last step tested; project Adam 0.003 "
    "on a cosine, best validation checkpoint tested",
    "batches: both sort pools by length and shuffle the batches; OpenNMT-py's pools are "
    "its defaults, the project's 50 batches",
    "loss: OpenNMT-py sums over the batch's tokens / sequences; project / (sequences x "
    "mean target length)",
]
REPORT = re.compile(r"Step (\d+)/.*?bsz:\s*(\d+)/\s*(\d+)/\s*\d+;\s*(\d+)/\s*(\d+) tok/s")


class TrainTokens(Callback):
    """Times the project's training epochs (data loading and steps, not validation) and
    counts their real target tokens; the first epoch is warm-up. Writes ``path`` (JSON)
    at the end of the test, with the test's exact-match accuracy."""

    def __init__(self, path: str):
        self.path, self.tokens, self.seconds, self.start = Path(path), 0, 0.0, None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start, self.epoch_tokens = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epoch_tokens += int((batch.tgt != 0).sum())

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.start is not None and trainer.current_epoch > 0:
            self.seconds += time.perf_counter() - self.start
            self.tokens += self.epoch_tokens
        self.start = None

    def on_test_end(self, trainer, pl_module) -> None:
        accuracy = float(trainer.callback_metrics["test/seq_acc"])
        self.path.write_text(json.dumps({"tokens": self.tokens, "seconds": self.seconds,
                                         "tok_per_s": self.tokens / max(self.seconds, 1e-9),
                                         "accuracy": accuracy}))


def install(folder: Path) -> tuple[Path, Path]:
    """OpenNMT-py and the two packages it needs to import, into ``folder/site``; and the
    script that runs its tools. Returns both."""
    site = folder / "site"
    if not (site / "onmt").is_dir():
        call([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
              *PEER_PACKAGES])
    runner = folder / "run_onmt.py"
    runner.write_text(RUNNER)
    return site, runner


def call(cmd: list[str], env: dict | None = None) -> str:
    """Run ``cmd``; its output, or an error with the end of it."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {done.returncode}: "
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


def export(folder: Path, max_len: int, train_size: int) -> dict[str, Path]:
    """The reverse task's splits (as the project builds them) as text files."""
    dm = Seq2SeqDataModule("reverse", train_size=train_size, val_size=500, test_size=1000,
                           seed=42, vocab_size=10, min_len=1, max_len=max_len)
    dm.prepare_data()
    vocabs, files = dm.vocabs, {}
    for split in ("train", "val", "test"):
        data = dm.dataset(split)
        for side, vocab, key in (("src", vocabs[0], "src"), ("tgt", vocabs[1], "tgt")):
            path = files[f"{split}.{side}"] = folder / f"{split}.{side}"
            path.write_text("".join(" ".join(vocab.decode(data[i][key])) + "\n"
                                    for i in range(len(data))))
    return files


def peer_config(folder: Path, files: dict[str, Path], steps: int) -> Path:
    """OpenNMT-py's YAML for the model and training the project's default matches."""
    config = {
        "save_data": str(folder / "run"), "overwrite": True,
        "src_vocab": str(folder / "vocab.src"), "tgt_vocab": str(folder / "vocab.tgt"),
        "data": {"corpus_1": {"path_src": str(files["train.src"]),
                              "path_tgt": str(files["train.tgt"])},
                 "valid": {"path_src": str(files["val.src"]), "path_tgt": str(files["val.tgt"])}},
        "save_model": str(folder / "model"), "save_checkpoint_steps": steps,
        "train_steps": steps, "valid_steps": 10 * steps, "report_every": 50,
        "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM", "layers": 1,
        "hidden_size": HIDDEN, "word_vec_size": HIDDEN, "global_attention": "mlp",
        "input_feed": 1, "batch_size": BATCH, "batch_type": "sents", "optim": "adam",
        "learning_rate": LR, "max_grad_norm": 1.0, "seed": 42, "world_size": 1,
        "num_workers": 0,
    }
    path = folder / "onmt.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def window_rates(log: str) -> tuple[int, float]:
    """Target tokens and seconds over OpenNMT-py's report windows after the first."""
    tokens, seconds, last = 0, 0.0, 0
    for i, m in enumerate(REPORT.finditer(log)):
        step, tgt_batch, tgt_rate = int(m[1]), int(m[3]), int(m[5])
        if i > 0 and tgt_rate:
            window = tgt_batch * (step - last)
            tokens, seconds = tokens + window, seconds + window / tgt_rate
        last = step
    return tokens, seconds


def run_peer(folder: Path, peer: tuple[Path, Path], files: dict[str, Path],
             steps: int) -> dict:
    """Train OpenNMT-py ``steps`` batches; its tokens/s and test exact match (greedy)."""
    site, script = peer
    # Its checkpoints pickle an argparse.Namespace, which torch >= 2.6 only loads with
    # weights_only off: these are the ones it has just written.
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1",
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    runner = [sys.executable, str(script)]
    config = peer_config(folder, files, steps)
    call([*runner, "build_vocab", "-config", str(config), "-n_sample", "-1"], env)
    tokens, seconds = window_rates(call([*runner, "train", "-config", str(config)], env))
    pred = folder / "test.pred"
    call([*runner, "translate", "-model", str(folder / f"model_step_{steps}.pt"), "-src",
          str(files["test.src"]), "-output", str(pred), "-beam_size", "1", "-batch_size",
          str(BATCH)], env)
    right = [p.split() == t.split() for p, t in zip(pred.read_text().splitlines(),
                                                    files["test.tgt"].read_text().splitlines(),
                                                    strict=True)]
    return {"tok_per_s": tokens / max(seconds, 1e-9), "accuracy": sum(right) / len(right)}


def run_project(folder: Path, max_len: int, train_size: int, epochs: int,
                extra: list[str]) -> dict:
    """Train the project with its defaults (``model=attention``) for ``epochs``; its
    tokens/s and test exact match (greedy)."""
    out = folder / "project.json"
    cmd = [sys.executable, "-m", "pipeline.train", "data=reverse", f"data.max_len={max_len}",
           f"data.train_size={train_size}", f"trainer.max_epochs={epochs}", "threads=1",
           "~callbacks.stop_when_solved", f"data.batch_size={BATCH}", f"optimizer.lr={LR}",
           f"model.hidden_dim={HIDDEN}", "+callbacks.tokens._target_="
           "bench.peer.TrainTokens", f"+callbacks.tokens.path={out}", *extra]
    env = {**os.environ, "SEQ2SEQ_OUTPUT_DIR": str(folder / "outputs"), "OMP_NUM_THREADS": "1"}
    call(cmd, env)
    return json.loads(out.read_text())


def compare(root: Path, lengths: list[int], sequences: int, rounds: int,
            extra: list[str]) -> dict:
    """Both programs on each task, alternated for ``rounds`` rounds: medians."""
    peer = install(root)
    results = {}
    for max_len in lengths:
        folder = root / f"reverse-1-{max_len}"
        folder.mkdir(parents=True, exist_ok=True)
        train_size = TASKS[max_len]
        files = export(folder, max_len, train_size)
        steps, epochs = sequences // BATCH, max(2, sequences // train_size)
        runs: dict[str, list[dict]] = {"peer": [], "project": []}
        for r in range(rounds):
            order = ("peer", "project") if r % 2 == 0 else ("project", "peer")
            for who in order:
                runs[who].append(run_peer(folder, peer, files, steps) if who == "peer"
                                 else run_project(folder, max_len, train_size, epochs, extra))
        med = {who: {k: statistics.median(r[k] for r in rs) for k in ("tok_per_s", "accuracy")}
               for who, rs in runs.items()}
        med["ratio"] = med["project"]["tok_per_s"] / med["peer"]["tok_per_s"]
        results[f"reverse 1-{max_len}"] = med
    return results


def table(results: dict, sequences: int) -> str:
    lines = ["| task | OpenNMT-py tok/s | project tok/s | ratio (target >= "
             f"{TARGET_RATIO}) | OpenNMT-py acc | project acc |", "|---|---|---|---|---|---|"]
    for task, r in results.items():
        met = "met" if r["ratio"] >= TARGET_RATIO else "MISSED"
        lines.append(f"| {task} | {r['peer']['tok_per_s']:.0f} | {r['project']['tok_per_s']:.0f}"
                     f" | {r['ratio']:.2f}x ({met}) | {r['peer']['accuracy']:.3f} | "
                     f"{r['project']['accuracy']:.3f} |")
    return "\n".join([*lines, "", f"{sequences:,} training sequences each, one torch thread, "
                      f"batch {BATCH}, hidden {HIDDEN}, Adam {LR}. Not equal:",
                      *(f"- {u}" for u in UNEQUAL)])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 40],
                        choices=sorted(TASKS), help="reverse tasks by their longest sequence")
    parser.add_argument("--sequences", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="project overrides, e.g. "
                        "data.bucket_by_length=true")
    args = parser.parse_args(argv)
    root = Path(os.environ.get("SEQ2SEQ_OUTPUT_DIR", "outputs")) / "bench" / "peer"
    root.mkdir(parents=True, exist_ok=True)
    results = compare(root.resolve(), args.lengths, args.sequences, args.rounds, args.extra)
    text = table(results, args.sequences)
    print(text)
    (root / "latest.md").write_text(text + "\n")
    (root / "latest.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
