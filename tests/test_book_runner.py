"""The notebook runner: order from _toc.yml, and a failing cell stops with a clear error."""
import nbformat

from diaropt.book import runner as book


def test_toc_lists_every_chapter_in_order():
    files = book.toc_files()
    assert files[0] == "book/intro"
    nbs = [f for f in files if f.startswith("notebooks/")]
    assert nbs == sorted(nbs) and "notebooks/00_baseline" in nbs
    assert all(p.exists() for p in book.notebooks_in_order())


def test_committed_notebooks_have_parameters_and_no_outputs():
    for path in book.notebooks_in_order():
        nb = nbformat.read(path, 4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert any("parameters" in c.metadata.get("tags", []) for c in code), path
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path
        titles = [c.source for c in nb.cells if c.cell_type == "markdown"]
        text = "\n".join(titles)
        for section in ("## Overview", "## Prerequisites", "## Summary", "## References"):
            assert section in text, (path, section)


def test_failing_cell_stops_with_notebook_and_cell_named(tmp_path, capsys):
    src = tmp_path / "notebooks" / "bad.ipynb"
    src.parent.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile = "full"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
        nbformat.v4.new_code_cell("never = True"),
    ])
    nb.metadata["kernelspec"] = {"name": "diaropt", "display_name": "diaropt", "language": "python"}
    nbformat.write(nb, src)
    rc = book.execute("smoke", notebooks=[src], stage=tmp_path / "stage")
    err = capsys.readouterr().err
    assert rc == 1
    assert "notebooks/bad.ipynb" in err and "ValueError: boom" in err and "cell" in err
