"""The end-of-training report, a Lightning callback (``conf/callbacks/report.yaml``).

After ``fit``: the best checkpoint's monitored value as ``best/<monitor>``. After ``test``
(which ran on the best checkpoint's weights): the model (for token tasks a pyfunc model,
texts in and out, ``pipeline/serving.py``), every test
example's score (``test_examples.json``, which a sweep compares candidates with), a sample table
of the first test examples decoded, attention heatmaps of a few of them, and the test
accuracy by input length. Only the global-zero rank logs.
"""

from __future__ import annotations

import copy
import logging
from importlib.metadata import version

import lightning as L
from lightning.pytorch.callbacks import Callback

from pipeline.data.tokenize import TextCodec, tokenizers_from_json
from pipeline.decode import Translator, decode
from pipeline.serving import log_text_model
from pipeline.tracking import artifacts, plots

log = logging.getLogger(__name__)


class Report(Callback):
    """Logs the best score, the model and the report to the trainer's MLflow run."""

    def __init__(self, examples: int = 50, heatmaps: int = 4):
        self.examples, self.heatmaps = examples, heatmaps

    @staticmethod
    def translator(net, vocabs, tokenizers: dict | None, hparams) -> Translator:
        """The trained network with its codecs, as predicting and serving load it."""
        source, target = tokenizers_from_json(tokenizers)
        return Translator(net, TextCodec(source, vocabs[0]), TextCodec(target, vocabs[1]),
                          hparams.max_decode_len, hparams.net)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        if not trainer.is_global_zero or checkpoint is None or checkpoint.monitor is None:
            return
        if checkpoint.best_model_score is not None:
            run = trainer.logger.experiment, trainer.logger.run_id
            run[0].log_metric(run[1], f"best/{checkpoint.monitor}",
                              float(checkpoint.best_model_score))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        client, run_id = trainer.logger.experiment, trainer.logger.run_id
        datamodule, hparams = trainer.datamodule, pl_module.hparams
        net = copy.deepcopy(pl_module.net).cpu().eval()
        vocabs = datamodule.vocabs
        requirements = [f"{p}=={version(p)}" for p in ("torch", "seq2seq-pipeline")]
        test = datamodule.dataset("test")
        if vocabs is None:
            artifacts.log_model(trainer.logger.tracking_uri, run_id, net, requirements)
        else:
            translator = self.translator(net, vocabs, datamodule.tokenizers, hparams)
            source, target = translator.source.tokenizer.join, translator.target.tokenizer.join
            log_text_model(trainer.logger.tracking_uri, run_id, translator, requirements,
                           datamodule.source_texts("test", 3))
        examples = pl_module.test_examples
        if examples and len(examples["index"]):
            client.log_table(run_id, {"index": examples["index"].long().tolist(),
                                      "score": examples["score"].tolist()},
                            artifacts.TEST_EXAMPLES)
            client.set_tag(run_id, "example_score", pl_module.example_score)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        test_metric = hparams.monitor.replace("val/", "test/")
        log.info("%s: %s", test_metric, metrics.get(test_metric), extra={"console": False})
        if vocabs is None:
            return
        rows = [test[i] for i in range(min(self.examples, len(test)))]
        examples = decode(net, [vocabs[0].decode(r["src"]) for r in rows], vocabs,
                          hparams.max_decode_len, hparams.beam_size,
                          [vocabs[1].decode(r["tgt"]) for r in rows])
        client.log_table(run_id, {
            "input": [source(e.source) for e in examples],
            "target": [target(e.target) for e in examples],
            "prediction": [target(e.prediction) for e in examples],
            "correct": [e.prediction == e.target for e in examples],
        }, "samples.json")
        for i, e in enumerate(examples[: self.heatmaps]):
            if e.attention is not None:
                fig = plots.attention_heatmap(e.attention, e.source, [*e.prediction, "</s>"])
                client.log_figure(run_id, fig, f"plots/attention_{i}.png")
                plots.plt.close(fig)
        curve = plots.bucket_curves(metrics)
        if len(curve):
            fig = plots.accuracy_by_length({"test": curve})
            client.log_figure(run_id, fig, "plots/accuracy_by_length.png")
            plots.plt.close(fig)
