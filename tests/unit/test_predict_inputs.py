"""An input that predict (or a served model) refuses is named: the input file's line, or
which of the ``inputs`` it is, with the reason and what would be right, in one line."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from pipeline.data.tokenize import Chars, TextCodec
from pipeline.data.vocab import Vocab
from pipeline.decode import Translator
from pipeline.errors import InputError
from pipeline.predict import refusal

FROM_FILE = OmegaConf.create({"inputs_file": "in.txt"})
FROM_LIST = OmegaConf.create({"inputs_file": None})


@pytest.fixture
def translator() -> Translator:
    codec = TextCodec(Chars(), Vocab("abc "))
    return Translator(torch.nn.Identity(), codec, codec, max_len=5)


def refused(translator: Translator, texts: list[str]) -> InputError:
    with pytest.raises(InputError) as err:
        translator.check(texts)
    return err.value


def test_unknown_symbols_are_named_by_line_or_position(translator):
    texts = ["abc", "a b", "cäb", "xa", "ay"]
    err = refused(translator, texts)
    reason = ("symbols outside the model's vocabulary: ä (it knows: a b c ' '); 2 later inputs "
              "have such symbols too; use unknown=unk to read them as <unk>")
    assert str(err) == f"input 3 of 5 has {reason}"  # as a served model answers
    assert str(refusal(FROM_FILE, "inputs_file", texts, err)) == (
        f"inputs_file: in.txt, line 3: the line has {reason}")
    assert str(refusal(FROM_LIST, "inputs", texts, err)) == (
        f"inputs='cäb' is invalid: input 3 of 5 has {reason}")
    translator.check(texts, unknown="unk")


def test_empty_inputs_and_none_are_named(translator):
    err = refused(translator, ["ab", "", "c"])
    assert str(refusal(FROM_FILE, "inputs_file", ["ab", "", "c"], err)) == (
        "inputs_file: in.txt, line 2: the line is empty; every input needs at least one symbol")
    assert str(refusal(FROM_LIST, "inputs", ["ab", "", "c"], err)) == (
        "inputs='' is invalid: input 2 of 3 is empty; every input needs at least one symbol")
    err = refused(translator, [])
    assert str(refusal(OmegaConf.create({"inputs_file": "-"}), "inputs_file", [], err)) == (
        "inputs_file: standard input: no inputs: give one per line")


def test_invisible_unknown_symbols_are_quoted():
    codec = TextCodec(Chars(), Vocab("ab"))
    translator = Translator(torch.nn.Identity(), codec, codec, max_len=5)
    assert "vocabulary: ' ' '\\u200b' (it knows: a b)" in str(refused(translator, ["a b\u200b"]))


def test_an_input_file_is_split_into_an_editors_lines(tmp_path):
    from pipeline.predict import inputs

    path = tmp_path / "in.txt"
    path.write_text("a\u2028b\r\n\nc\n", encoding="utf-8")
    assert inputs(OmegaConf.create({"inputs_file": str(path)})) == ("inputs_file",
                                                                    ["a\u2028b", "", "c"])
