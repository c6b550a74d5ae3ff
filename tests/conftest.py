import logging

import pytest


@pytest.fixture(scope="session")
def provisioned():
    """The verified model cache (provisioned by `make test` before pytest runs)."""
    from diaropt.core import models

    return models.provision()


@pytest.fixture(autouse=True)
def _quiet_logs():
    logging.getLogger("diaropt").setLevel(logging.ERROR)


def pytest_collection_modifyitems(config, items):
    """The ``resnet34`` tests (every chapter with random ResNet34 weights) run only when asked
    for by marker (``make test-resnet34``, i.e. ``pytest -m resnet34``), never in a plain run."""
    if "resnet34" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="opt-in: `make test-resnet34` (pytest -m resnet34)")
    for item in items:
        if "resnet34" in item.keywords:
            item.add_marker(skip)
