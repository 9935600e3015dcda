"""Writes train.tsv, val.tsv and test.tsv: numbers 0-999 in digits -> in English words.

    python examples/numbers/make.py

800/100/100 numbers, drawn without overlap by a fixed seed; a header names the columns
``source`` and ``target`` (data=files reads them by default).
"""

import random
from pathlib import Path

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def words(n: int) -> str:
    """``n`` (0-999) in English words: 342 -> three hundred forty two."""
    hundreds, rest = divmod(n, 100)
    out = [ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        out += [TENS[rest // 10]] + ([ONES[rest % 10]] if rest % 10 else [])
    elif rest or not out:
        out += [ONES[rest]]
    return " ".join(out)


def main() -> None:
    numbers = list(range(1000))
    random.Random(7).shuffle(numbers)
    here = Path(__file__).parent
    for name, chunk in (("train", numbers[:800]), ("val", numbers[800:900]),
                        ("test", numbers[900:])):
        rows = "".join(f"{n}\t{words(n)}\n" for n in chunk)
        (here / f"{name}.tsv").write_text("source\ttarget\n" + rows)


if __name__ == "__main__":
    main()
