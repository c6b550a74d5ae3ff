"""The book's prose types no verdict and no machine fact: they come from cells (myst-nb glue)."""
import json
from pathlib import Path

import pytest

from diaropt.book.verdicts import typed_judgements

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_scanner_finds_typed_verdicts_and_core_counts_but_not_glued_ones():
    text = ("| FP16: DER | < 0.5 % | +0.1 points | confirmed |\n"
            "On this 2-core CPU batching helps.\n"
            "With 2 cores there is little to gain.\n"
            "The target is **not met**.\n"
            "| FP16: size | 50 % | {glue:text}`ratio` | {glue:text}`fp16_size_verdict` |\n"
            "On {glue:text}`env_cores` cores, threads fight.\n"
            "A 10 s window, 3 speakers, batch 32.")
    assert typed_judgements(text) == ["| FP16: DER | < 0.5 % | +0.1 points | confirmed |",
                                      "On this 2-core CPU batching helps.",
                                      "With 2 cores there is little to gain.",
                                      "The target is **not met**."]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_notebook_types_a_verdict_or_a_core_count(path):
    cells = json.loads(path.read_text())["cells"]
    typed = [line for c in cells if c["cell_type"] == "markdown" for line in typed_judgements("".join(c["source"]))]
    assert typed == []
