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
