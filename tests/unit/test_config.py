"""Bad settings fail before any work, with a message naming the key and what is allowed."""

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from pipeline.build import settle
from pipeline.config import validate
from pipeline.errors import ConfigError
from pipeline.tracking.naming import config_hash, flatten


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.depth=two", "model.depth"),
        ("model.depth=0", "model.depth"),
        ("model.depth=[1]", "model.depth"),
        ("model.depth=[2,0]", "model.depth"),
        ("model.hidden_dim=-3", "model.hidden_dim"),
        ("model.dropout=1.5", "model.dropout"),
        ("model.io_dropout=-0.1", "model.io_dropout"),
        ("label_smoothing=1.0", "label_smoothing"),
        ("model.teacher_forcing=2", "model.teacher_forcing"),
        ("data.batch_size=0", "data.batch_size"),
        ("eval.beam_size=0", "eval.beam_size"),
        ("eval.val_beam_size=0", "eval.val_beam_size"),
        ("eval.bucket_width=0", "eval.bucket_width"),
    ],
)
def test_bad_values_name_the_key(compose_cfg, override, key):
    cfg = compose_cfg(override)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}=")


def test_length_range(compose_cfg):
    with pytest.raises(ConfigError, match=r"data.max_len=5 is invalid: an int >= data.min_len"):
        validate(compose_cfg("data.min_len=10", "data.max_len=5"))


def test_a_decoder_that_never_sees_the_source_is_rejected(compose_cfg):
    cfg = compose_cfg("model=seq2seq", "model.bridge=false")
    with pytest.raises(ConfigError, match="never sees the source"):
        validate(cfg)
    validate(compose_cfg("model=simple"))  # no bridge, but the repeated summary


@pytest.mark.parametrize(
    ("override", "key"),
    [("model.cell=transformer", "model.cell"), ("model.attention=maybe", "model.attention"),
     ("model.hidden_dim=abc", "model.hidden_dim"), ("model.no_such_key=1", "no_such_key"),
     ("data=no_such_task", "data")],
)
def test_types_and_unknown_keys_fail_at_composition(compose_cfg, override, key):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(override)
    text = str(err.value) + str(err.value.__cause__)
    assert key in text


def test_defaults_are_valid(compose_cfg):
    for preset in ("simple", "seq2seq", "attention"):
        validate(compose_cfg(f"model={preset}"))


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        (["trainer=gpu"], "trainer.accelerator", "no GPU"),
        (["trainer=ddp_cpu", "trainer.devices=1"], "trainer.devices", "at least 2 devices"),
        (["logger.tracking_uri=http://127.0.0.1:9"], "logger.tracking_uri", "make server"),
        (["logger.tracking_uri=sqlite:///{tmp}/a-file/x/mlflow.db"], "logger.tracking_uri",
         "writable folder"),
    ],
)
def test_what_this_machine_cannot_do_is_refused_up_front(
    compose_cfg, tmp_path, overrides, key, allowed
):
    if "gpu" in overrides[0] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "a-file").write_text("a file, not a folder")
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    with pytest.raises(ConfigError, match=allowed) as err:
        settle(compose_cfg(*overrides))
    assert err.value.key == key


def test_secret_looking_params_are_masked(compose_cfg):
    cfg = compose_cfg("+db.password=hunter2", "+db.api_key=abc", "+db.host=x")
    flat = flatten(cfg)
    assert flat["db.password"] == "***" and flat["db.api_key"] == "***"
    assert flat["db.host"] == "x"


@pytest.mark.parametrize(
    ("name", "feedback", "peek", "attention"),
    [("simple", False, False, "none"), ("seq2seq", True, False, "none"),
     ("cho", True, True, "none"), ("luong-additive", True, False, "additive"),
     ("bahdanau", True, True, "additive")],
)
def test_each_candidate_of_the_default_grid_is_its_model(compose_cfg, name, feedback, peek,
                                                          attention):
    model = compose_cfg(f"model={name}", "model.depth=2").model
    assert (model.feedback, model.peek, str(model.attention), model.depth) == (
        feedback, peek, attention, 2)
    assert model.bridge is feedback  # the Sutskever family bridges; RepeatVector does not


def test_config_hash_ignores_where_outputs_go(compose_cfg, tmp_path):
    a = compose_cfg("paths.run_dir=/a", "sweep_id=x")
    b = compose_cfg(f"paths.run_dir={tmp_path}/b")
    assert config_hash(a) == config_hash(b)
    assert config_hash(compose_cfg("model.depth=2")) != config_hash(b)


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("experiment/*.yaml")) + sorted(
    CONF_DIR.glob("hparams_search/*.yaml")), ids=lambda p: f"{p.parent.name}={p.stem}")
def test_every_experiment_and_search_composes_and_validates(compose_cfg, path):
    """Each file of conf/experiment and conf/hparams_search composes with the defaults and
    passes validation, so a recipe cannot rot unnoticed."""
    cfg = compose_cfg(f"{path.parent.name}={path.stem}")
    validate(cfg)
    assert cfg.data.task and cfg.model.hidden_dim >= 1


def test_the_monitored_metric_has_its_direction_by_name(compose_cfg):
    from pipeline.build import fill_monitor

    for overrides, monitor, mode in [
        ([], "val/seq_acc", "max"), (["data=vectors"], "val/loss", "min"),
        (["monitor=val/cer"], "val/cer", "min"), (["monitor=val/chrf"], "val/chrf", "max"),
        (["monitor=val/per"], "val/per", "min"),
        (["monitor=val/loss", "monitor_mode=max"], "val/loss", "max"),
    ]:
        cfg = compose_cfg(*overrides)
        fill_monitor(cfg)
        assert (cfg.monitor, cfg.monitor_mode) == (monitor, mode), overrides


def test_threads_leave_a_core_free_or_share_them_among_jobs():
    from pipeline.build import default_threads

    assert [default_threads(c, 1) for c in (1, 2, 8)] == [1, 1, 7]
    assert [default_threads(c, j) for c, j in ((2, 2), (8, 2), (8, 3), (2, 4))] == [1, 4, 2, 1]
