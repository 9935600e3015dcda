"""make results: every published figure it re-runs is found in docs/results.md, once, by its
own regular expression; the drift verdicts; no training."""

import math

import pytest

from bench import results
from bench.results import (
    ACCURACY,
    DOC,
    EPOCHS,
    RECIPES,
    WALL,
    DocError,
    Figure,
    Recipe,
    drifted,
    published,
    rows_of,
    seconds,
    value_of,
)

DOC_TEXT = DOC.read_text()
FIGURES = [(r, f) for r in RECIPES for f in r.figures]


@pytest.mark.parametrize(("recipe", "figure"), FIGURES,
                         ids=[f"{r.name}-{f.name}" for r, f in FIGURES])
def test_every_figure_is_found_once_in_the_docs(recipe, figure):
    written = published(DOC_TEXT, recipe, figure)
    value = value_of(figure, written)
    assert not math.isnan(value)
    if figure.tolerance == ACCURACY:
        assert 0.0 <= value <= 1.0
    if figure.measure in (EPOCHS, WALL):
        assert value > 0


def test_the_quick_recipes_and_their_measures():
    assert [r.name for r in RECIPES] == ["default", "addition", "numbers"]
    for recipe in RECIPES:
        assert recipe.args[-1] == "threads=1"
        measures = [f.measure for f in recipe.figures]
        assert "test/seq_acc" in measures and EPOCHS in measures and WALL in measures
        assert len({f.name for f in recipe.figures}) == len(recipe.figures)
    assert RECIPES[0].command == 'make train ARGS="threads=1"'
    assert RECIPES[1].command == 'make train ARGS="experiment=addition threads=1"'


def test_a_figure_found_twice_or_not_at_all_is_refused():
    recipe = RECIPES[1]
    figure = next(f for f in recipe.figures if f.measure == "test/seq_acc")
    section = f"## {recipe.section}\n\n| result | **test seq_acc 0.998** |\n"
    assert published(section, recipe, figure) == "0.998"
    with pytest.raises(DocError, match="2 matches"):
        published(section + "| result | **test seq_acc 0.990** |\n", recipe, figure)
    with pytest.raises(DocError, match="0 matches"):
        published(f"## {recipe.section}\n\n| result | seq_acc 0.998 |\n", recipe, figure)
    with pytest.raises(DocError, match="no section"):
        published("## Something else\n", recipe, figure)


def test_a_figure_is_read_within_its_own_section():
    """The addition's result row does not stand in for the numbers' one."""
    recipe = next(r for r in RECIPES if r.name == "numbers")
    figure = recipe.figures[0]
    doc = ("## Three-digit addition\n\n| result | **test seq_acc 0.500** |\n\n"
           f"## {recipe.section}\n\n| result | **test seq_acc 1.000**, BLEU 99.0 |\n")
    assert published(doc, recipe, figure) == "1.000"


def test_drift_is_beyond_an_absolute_tolerance():
    assert drifted(0.9975, 0.998, 0.005) is False
    assert drifted(0.996, 0.991, 0.005) is False  # exactly the tolerance away
    assert drifted(0.996, 0.990, 0.005) is True
    assert drifted(0.985, 0.9975, 0.005) is True  # better counts as drift too
    assert drifted(100.0, 99.6, 0.5) is False
    assert drifted(100.0, 99.4, 0.5) is True
    assert drifted(0.9975, None, 0.005) is True  # missing
    assert drifted(0.9975, float("nan"), 0.005) is True
    assert drifted(49.0, 120.0, None) is None  # not judged
    assert drifted(7.0, None, None) is None


def test_durations():
    assert seconds("49 s") == 49
    assert seconds("10 min 18 s") == 618
    assert seconds("1 h 2 min 3 s") == 3723
    assert results.duration(618.4) == "10 min 18 s"
    assert results.duration(49.2) == "49 s"
    with pytest.raises(ValueError):
        seconds("about ten minutes")


def test_rows_show_the_new_figure_as_the_docs_write_it():
    recipe = Recipe("toy", "Toy", "toy", (), (
        Figure("test seq_acc", r"^\| result \| \*\*test seq_acc ([\d.]+)\*\*", "test/seq_acc",
               ACCURACY),
        Figure("epochs", r"^\| epochs \| (\d+) of \d+", EPOCHS),
        Figure("wall time", r"^\| wall time \| ((?:\d+ min )?\d+ s)", WALL),
    ))
    doc = ("## Toy\n\n| epochs | 19 of 24 |\n| wall time | 10 min 18 s |\n"
           "| result | **test seq_acc 0.9975** |\n")
    now = {"test/seq_acc": 0.98999, EPOCHS: 21.0, WALL: 700.2}
    assert rows_of(doc, recipe, now) == [
        ("toy: test seq_acc", "0.9975", "0.9900", "DRIFTED (±0.005)"),
        ("toy: epochs", "19", "21", "not judged"),
        ("toy: wall time", "10 min 18 s", "11 min 40 s", "not judged"),
    ]
    assert rows_of(doc, recipe, {})[0][2:] == ("missing", "DRIFTED (±0.005)")
    now["test/seq_acc"] = 0.9980000257
    assert rows_of(doc, recipe, now)[0][2:] == ("0.9980", "ok (±0.005)")


def test_the_published_figures_against_themselves_have_not_drifted():
    for recipe in RECIPES:
        now = {f.measure: value_of(f, published(DOC_TEXT, recipe, f)) for f in recipe.figures}
        verdicts = [row[3] for row in rows_of(DOC_TEXT, recipe, now)]
        assert all(v.startswith("ok") or v == "not judged" for v in verdicts), verdicts


def test_list_and_only(capsys):
    assert results.main(["--list", "--only", "numbers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('numbers: make train ARGS="experiment=numbers threads=1"')
    assert "test BLEU" in out and "addition" not in out
    assert results.main(["--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(RECIPES)
    with pytest.raises(SystemExit, match="unknown recipe"):
        results.main(["--list", "--only", "g2p"])
