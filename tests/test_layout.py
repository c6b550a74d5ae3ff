"""The package layout: every module imports on its own, the variant registry stays lazy, and
every technique chapter has its one home in ``diaropt.techniques.<slug>``."""
import ast
import json
import pkgutil
import re
import subprocess
import sys

import pytest

import diaropt
from diaropt.book.runner import REPO_ROOT, notebooks_in_order, slug
from diaropt.pipelines import registry

MODULES = sorted(m.name for m in pkgutil.walk_packages(diaropt.__path__, "diaropt.")
                 if m.name.rsplit(".", 1)[-1] != "__main__")

# For each module: forget every diaropt module, then import that one alone. Third-party
# libraries stay loaded (they do not depend on diaropt), so one interpreter checks all modules
# in a couple of seconds, and each import starts from no diaropt state: an import cycle, or an
# import that works only after some other diaropt module was imported, fails here.
IMPORT_EACH = """
import importlib, json, sys, traceback
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "diaropt" or m.startswith("diaropt.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
"""


def _python(code: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_package_has_the_documented_layout():
    for package in ("core", "portable", "pipelines", "measure", "book", "techniques"):
        assert f"diaropt.{package}" in MODULES
    assert "diaropt.pipelines.registry" in MODULES and "diaropt.book.runner" in MODULES


def test_every_module_imports_alone_in_a_fresh_interpreter():
    failed = json.loads(_python(IMPORT_EACH, json.dumps(MODULES)))
    assert not failed, "\n".join(f"{name}:\n{tb}" for name, tb in failed.items())


def test_the_registry_imports_no_pipeline():
    loaded = json.loads(_python("import json, sys; import diaropt.pipelines.registry; "
                                "print(json.dumps(sorted(m for m in sys.modules if m.startswith('diaropt'))))"))
    pipelines = {m for m in MODULES if m.startswith("diaropt.pipelines.")} - {"diaropt.pipelines.registry"}
    assert pipelines and not pipelines & set(loaded), sorted(pipelines & set(loaded))
    modules = {spec.partition(":")[0] for spec in registry.VARIANTS.values()}
    assert modules <= pipelines | {"diaropt.pipelines.registry"}, modules - pipelines


def test_every_variant_resolves_to_a_callable():
    for name in registry.VARIANTS:
        assert callable(registry.factory(name)), name
    with pytest.raises(registry.UnknownVariant):
        registry.factory("no-such-variant")


def _technique_notebooks():
    return [nb for nb in notebooks_in_order() if re.fullmatch(r"(0[1-9]|10)_\w+", nb.stem)]


def test_every_technique_chapter_has_its_module_naming_it():
    notebooks = _technique_notebooks()
    assert [nb.stem[:2] for nb in notebooks] == [f"{n:02d}" for n in range(1, 11)]
    home = REPO_ROOT / "src" / "diaropt" / "techniques"
    for nb in notebooks:
        module = home / f"{slug(nb)}.py"
        assert module.exists(), f"{nb.name} has no module {module.relative_to(REPO_ROOT)}"
        doc = ast.get_docstring(ast.parse(module.read_text())) or ""
        assert f"Chapter {nb.stem[:2]}" in doc, f"{module.name}'s docstring does not name chapter {nb.stem[:2]}"


def test_no_notebook_spells_the_window_length_as_a_literal():
    """160000 samples is ``WINDOW_SAMPLES`` (``diaropt.core.constants``), never a literal."""
    import nbformat

    offenders = [nb.name for nb in notebooks_in_order()
                 if re.search(r"(?<![\w.])160_?000(?![\w.])",
                              "\n".join(c.source for c in nbformat.read(nb, 4).cells if c.cell_type == "code"))]
    assert not offenders, offenders


def _resolves(dotted: str) -> bool:
    """``diaropt.core.models.provision`` -> the longest importable module, then attributes."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_prose_names_only_modules_that_exist():
    """README.md and book/*.md name code by its dotted path: each one resolves."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "book").glob("*.md"))]
    named = {(page.name, name) for page in pages
             for name in re.findall(r"\bdiaropt(?:\.[A-Za-z_]\w*)+", page.read_text())}
    assert len(named) > 10
    missing = sorted((page, name) for page, name in named if not _resolves(name))
    assert not missing, missing
