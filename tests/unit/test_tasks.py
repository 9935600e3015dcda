"""The tasks: what their targets mean, how their splits are cut, and that they load offline."""

from __future__ import annotations

import datetime as dt
import re
import socket

import numpy as np
import pytest
import torch

from pipeline.data import UNK, Seq2SeqDataModule
from pipeline.data.tasks import TASKS, TokenSplit, VectorSplit, make_task
from pipeline.data.tasks import co2 as co2_module
from pipeline.data.tasks import g2p as g2p_module
from pipeline.data.tasks.dates import FIRST, FORMATS, LAST, format_date

SMALL = {"train": 300, "val": 50, "test": 50}
TOKEN_TASKS = {
    "copy": {}, "reverse": {}, "sort": {}, "addition": {},
    "addition-reversed": {"reverse_input": True}, "dates": {},
}


def token_task(name: str):
    return make_task(name.split("-")[0], **TOKEN_TASKS[name])


def sources(split: TokenSplit) -> set[tuple[str, ...]]:
    return {tuple(s) for s in split.sources}


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_new_tasks_are_registered():
    assert {"addition", "dates", "vectors", "g2p", "co2"} <= set(TASKS)


# -- splits of the token tasks ------------------------------------------------------------------


@pytest.mark.parametrize("name", TOKEN_TASKS)
def test_token_splits_are_disjoint(name):
    splits = token_task(name).build(0, SMALL)
    assert {k: len(v.sources) for k, v in splits.items()} == SMALL
    train, val, test = (sources(splits[k]) for k in ("train", "val", "test"))
    assert not val & train
    assert not test & (train | val)


@pytest.mark.parametrize("name", TOKEN_TASKS)
def test_token_splits_are_deterministic_in_the_seed(name):
    first, again, other = (token_task(name).build(s, SMALL) for s in (3, 3, 4))
    for k in first:
        assert first[k].sources == again[k].sources
        assert first[k].targets == again[k].targets
        assert first[k].sources != other[k].sources


def test_sort_targets_are_sorted():
    for split in make_task("sort").build(0, SMALL).values():
        for src, tgt in zip(split.sources, split.targets, strict=True):
            assert tgt == sorted(src, key=int)


# -- addition -------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse_input", [False, True])
@pytest.mark.parametrize("digits", [1, 3, 4])
def test_addition_targets_are_the_sums(digits, reverse_input):
    task = make_task("addition", digits=digits, reverse_input=reverse_input)
    sizes = {"train": 60, "val": 20, "test": 20}
    for split in task.build(0, sizes).values():
        for src, tgt in zip(split.sources, split.targets, strict=True):
            text = "".join(src[::-1] if reverse_input else src)
            assert re.fullmatch(r"\d+\+\d+", text)
            a, b = (int(x) for x in text.split("+"))
            assert all(str(int(x)) == x for x in text.split("+"))
            assert a < 10**digits and b < 10**digits
            assert "".join(tgt) == str(a + b)


def test_addition_can_use_every_question_and_no_more():
    task = make_task("addition", digits=1)
    splits = task.build(0, {"train": 80, "val": 10, "test": 10})
    questions = set().union(*(sources(s) for s in splits.values()))
    assert len(questions) == 100
    with pytest.raises(ValueError, match="only 100 distinct"):
        task.build(0, {"train": 90, "val": 10, "test": 1})


def test_addition_draws_short_and_long_operands():
    split = make_task("addition", digits=3).build(0, SMALL)["train"]
    lengths = {len(x) for s in split.sources for x in "".join(s).split("+")}
    assert lengths == {1, 2, 3}


# -- dates ----------------------------------------------------------------------------------


def test_date_strings_name_one_date_each():
    assert len(FORMATS) >= 8
    names: dict[str, dt.date] = {}
    day = FIRST
    while day <= LAST:
        for fmt in FORMATS:
            text = format_date(day, fmt)
            assert names.setdefault(text, day) == day, f"{text!r} is ambiguous"
        day += dt.timedelta(days=1)
    assert format_date(dt.date(1994, 3, 3), "{A}, {B} {d}, {Y}") == "Thursday, March 3, 1994"


def test_dates_targets_are_the_dates_of_the_sources():
    def parse(text):
        for fmt in FORMATS:
            pattern = re.escape(fmt)
            for key, regex in {
                "dd": r"\d\d", "mm": r"\d\d", "yy": r"\d\d", "d": r"\d{1,2}", "m": r"\d{1,2}",
                "Y": r"\d{4}", "B": r"[A-Z][a-z]+", "b_lower": r"[a-z]{3}", "b": r"[A-Z][a-z]{2}",
                "A": r"[A-Z][a-z]+day", "a": r"[A-Z][a-z]{2}",
            }.items():
                pattern = pattern.replace(re.escape("{" + key + "}"), f"(?P<{key}>{regex})")
            match = re.fullmatch(pattern, text)
            if match:
                yield fmt, match.groupdict()

    splits = make_task("dates").build(0, {"train": 500, "val": 100, "test": 100})
    for split in splits.values():
        for src, tgt in zip(split.sources, split.targets, strict=True):
            text, date = "".join(src), dt.date.fromisoformat("".join(tgt))
            assert FIRST <= date <= LAST
            readings = {fmt for fmt, _ in parse(text) if format_date(date, fmt) == text}
            assert readings, f"{text!r} does not describe {date}"


# -- vectors --------------------------------------------------------------------------------


def test_vectors_shapes_and_function():
    task = make_task("vectors", input_length=4, input_dim=3, output_length=6, output_dim=2)
    splits = task.build(0, SMALL)
    for name, split in splits.items():
        assert isinstance(split, VectorSplit)
        assert split.sources.shape == (SMALL[name], 4, 3)
        assert split.targets.shape == (SMALL[name], 6, 2)
        x = split.sources.astype(np.float64)
        w = task.weights
        expected = np.tanh(x[:, [3, 2, 1, 0, 3, 2]] @ w.T)
        np.testing.assert_allclose(split.targets, expected, rtol=1e-5, atol=1e-6)
    other = make_task("vectors", input_length=4, input_dim=3, output_length=6, output_dim=2)
    np.testing.assert_array_equal(task.weights, other.weights)


def test_vectors_are_deterministic_in_the_seed():
    task = make_task("vectors")
    first, again, other = (task.build(s, SMALL) for s in (1, 1, 2))
    for k in first:
        np.testing.assert_array_equal(first[k].sources, again[k].sources)
        np.testing.assert_array_equal(first[k].targets, again[k].targets)
        assert not np.allclose(first[k].sources, other[k].sources)
    assert not np.allclose(first["train"].sources[:50], first["val"].sources)


# -- g2p ------------------------------------------------------------------------------------

ALL = {"train": None, "val": None, "test": None}


@pytest.fixture(scope="module")
def g2p_splits():
    return make_task("g2p").build(0, ALL)


@pytest.mark.slow  # builds all of CMUdict
def test_g2p_loads_offline(offline):
    g2p_module.dictionary.cache_clear()
    splits = make_task("g2p").build(0, {"train": 10, "val": 10, "test": 10})
    assert [len(s.sources) for s in splits.values()] == [10, 10, 10]


@pytest.mark.slow  # builds all of CMUdict
def test_g2p_splits_by_word(g2p_splits):
    words = {k: {"".join(w) for w in s.sources} for k, s in g2p_splits.items()}
    sizes = {k: len(s.sources) for k, s in g2p_splits.items()}
    assert all(len(words[k]) == sizes[k] for k in words)
    assert not words["train"] & words["val"]
    assert not words["test"] & (words["train"] | words["val"])
    total = sum(sizes.values())
    assert total > 100_000
    assert 0.04 < sizes["val"] / total < 0.06 and 0.04 < sizes["test"] / total < 0.06
    for word in words["train"] | words["val"] | words["test"]:
        assert len(word) <= 20 and re.fullmatch(r"[a-z']*[a-z][a-z']*", word)


@pytest.mark.slow  # builds all of CMUdict
def test_g2p_references_hold_every_pronunciation(g2p_splits):
    entries = make_task("g2p").entries()
    for split in g2p_splits.values():
        assert len(split.references) == len(split.sources)
        for src, tgt, refs in zip(split.sources, split.targets, split.references, strict=True):
            assert tgt == refs[0] and tgt in refs
            assert [" ".join(r) for r in refs] == entries["".join(src)]
    assert any(len(r) > 1 for r in g2p_splits["train"].references)
    assert not any(re.search(r"\d", p) for t in g2p_splits["train"].targets for p in t)


@pytest.mark.slow  # builds all of CMUdict
def test_g2p_stress(g2p_splits):
    stressed = make_task("g2p", stress=True).build(0, {"train": 500, "val": 50, "test": 50})
    for name, split in stressed.items():
        plain = g2p_splits[name]
        assert split.sources == plain.sources[: len(split.sources)]
        for tgt, ref in zip(split.targets, plain.targets[: len(split.targets)], strict=True):
            assert [p.rstrip("012") for p in tgt] == ref
        assert any(re.fullmatch(r"[A-Z]+[012]", p) for t in split.targets for p in t)


@pytest.mark.slow  # builds all of CMUdict
def test_g2p_caps_are_prefixes_and_short_words_keep_their_split(g2p_splits):
    capped = make_task("g2p").build(0, {"train": 100, "val": 20, "test": 20000})
    for name, split in capped.items():
        assert split.sources == g2p_splits[name].sources[: len(split.sources)]
    assert len(capped["test"].sources) == len(g2p_splits["test"].sources)
    short = make_task("g2p", max_word_len=5).build(0, ALL)
    for name, split in short.items():
        kept = [w for w in g2p_splits[name].sources if len(w) <= 5]
        assert split.sources == kept


# -- co2 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def co2_splits():
    return make_task("co2").build(0, SMALL)


def test_co2_loads_offline(offline):
    series = co2_module.load_series()
    assert len(series) > 2000 and not series.isna().any()


def test_co2_time_order_and_shapes(co2_splits):
    times = {k: s.extra["target_time"] for k, s in co2_splits.items()}
    assert times["train"].max() < times["val"].min()
    assert times["val"].max() < times["test"].min()
    for split in co2_splits.values():
        n = len(split.sources)
        assert split.sources.shape == (n, 52, 1) and split.targets.shape == (n, 13, 1)
        assert split.extra["seasonal_naive"].shape == split.targets.shape
        assert split.extra["target_time"].shape == split.targets.shape[:2]
        assert np.isfinite(split.sources).all() and np.isfinite(split.targets).all()
    assert len(co2_splits["val"].sources) > 100 and len(co2_splits["test"].sources) > 100


def test_co2_scaling_and_seasonal_naive(co2_splits):
    series = co2_module.load_series()
    val_start = series.index.get_loc(co2_splits["val"].extra["target_time"].min())
    train = series.to_numpy()[:val_start]
    for split in co2_splits.values():
        mean, std = split.extra["mean"], split.extra["std"]
        level = split.extra["level"]  # (N, 1): each window is relative to its last input
        assert mean == pytest.approx(train.mean()) and std == pytest.approx(train.std())
        np.testing.assert_allclose(split.sources[:, -1, 0], 0.0, atol=1e-6)
        t = split.extra["target_time"]
        raw = series.loc[t.ravel()].to_numpy().reshape(t.shape)
        np.testing.assert_allclose((split.targets[..., 0] + level) * std + mean, raw, rtol=1e-5)
        before = t.ravel() - np.timedelta64(52 * 7, "D")
        naive = series.loc[before].to_numpy().reshape(t.shape)
        np.testing.assert_allclose(
            (split.extra["seasonal_naive"][..., 0] + level) * std + mean, naive, rtol=1e-5
        )
        absolute = split.sources[..., 0] + level
        np.testing.assert_allclose(absolute[1:, :-1], absolute[:-1, 1:], atol=1e-5)
    absolute = make_task("co2", relative=False).build(0, SMALL)["train"]
    assert absolute.targets.mean() == pytest.approx(0.0, abs=0.05)


# -- through the data module ----------------------------------------------------------------

MODULE_CASES = {
    "addition": {"digits": 2},
    "dates": {},
    "vectors": {},
    "g2p": {"stress": True},
    "co2": {"input_length": 26, "output_length": 4},
}


@pytest.mark.parametrize("task", [pytest.param(t, marks=pytest.mark.slow) if t == "g2p" else t
                                  for t in MODULE_CASES])
def test_task_through_the_data_module(task, tmp_path):
    settings = dict(task=task, batch_size=8, train_size=64, val_size=16, test_size=16,
                    cache_dir=str(tmp_path), **MODULE_CASES[task])
    dm = Seq2SeqDataModule(**settings)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.cache_path.exists()
    batch = next(iter(dm.train_dataloader()))
    assert batch.src.shape[0] == 8 and batch.tgt.shape[0] == 8
    spec = dm.spec
    if dm.kind == "tokens":
        assert batch.src.dtype == torch.long and spec.input_dim > 4
        assert all(UNK not in item["src"].tolist() for item in dm.dataset("val"))
    else:
        assert batch.src.shape[-1] == spec.input_dim and batch.tgt.shape[-1] == spec.output_dim
    cached = Seq2SeqDataModule(**settings)
    cached.setup("test")
    assert len(cached.dataset("test")) == len(dm.dataset("test"))


# -- length buckets -------------------------------------------------------------------------

def _reverse_module(bucket: bool) -> Seq2SeqDataModule:
    dm = Seq2SeqDataModule("reverse", batch_size=16, train_size=320, val_size=32, test_size=32,
                           max_len=20, bucket_by_length=bucket)
    dm.setup("fit")
    return dm


def test_buckets_cut_padding_and_serve_every_example_once():
    from pipeline.data.dataset import padding_share

    plain, bucketed = _reverse_module(False), _reverse_module(True)
    assert padding_share(bucketed.train_dataloader()) < padding_share(plain.train_dataloader()) / 4
    for loader in (bucketed.train_dataloader(), bucketed.val_dataloader()):
        seen = torch.cat([b.index for b in loader]).sort().values
        assert seen.tolist() == list(range(len(loader.dataset)))
        assert all(b.src.shape[0] <= 16 for b in loader)


def test_buckets_under_ddp_shard_the_data_like_a_distributed_sampler():
    """Lightning re-creates the batch sampler around its DistributedSampler (ranks disjoint)."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    dm = _reverse_module(True)
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    shards = [_update_dataloader(loader, DistributedSampler(
        loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)) for rank in (0, 1)]
    assert type(shards[0].batch_sampler).__name__ == "BucketBatchSampler"
    seen = [torch.cat([b.index for b in shard]) for shard in shards]
    assert len(list(shards[0])) == len(list(shards[1]))
    assert set(seen[0].tolist()).isdisjoint(seen[1].tolist())
    assert sorted(torch.cat(seen).tolist()) == list(range(320))


def test_a_splits_sources_as_text_are_what_predict_reads(tmp_path):
    reverse = Seq2SeqDataModule(task="reverse", train_size=32, val_size=8, test_size=8, seed=1,
                                cache_dir=str(tmp_path), min_len=1, max_len=5, vocab_size=6)
    reverse.prepare_data()
    reverse.setup()
    texts = reverse.source_texts("test", 3)
    test = reverse.dataset("test")
    assert texts == [" ".join(reverse.vocabs[0].decode(test[i]["src"])) for i in range(3)]
    assert len(reverse.source_texts("test", 100)) == 8
    vectors = Seq2SeqDataModule(task="vectors", train_size=32, val_size=8, test_size=8,
                                seed=1, cache_dir=str(tmp_path))
    vectors.prepare_data()
    vectors.setup()
    assert vectors.source_texts("test", 3) == []
