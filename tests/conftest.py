"""Test-suite set-up: the same toolchain environment the CLI uses, the expensive shared
fixtures, and the order that keeps both cores busy."""

import pytest

from hwnn.tools.toolchain import setup_env

setup_env()


def pytest_collection_modifyitems(config, items):
    """Run the slow tests first (a stable sort keeps the rest in file order).

    Under ``pytest -n auto`` each worker takes tests in this order, so the long bitstream and
    simulation tests start at once instead of leaving one core idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def digits_mlp():
    """The digits MLP of ``hwnn demo`` (seed 0), trained once per test process:
    ``(model, (x_train, x_test, y_train, y_test))``. Tests must not modify it."""
    from hwnn.flow.demo import train_digits_mlp
    return train_digits_mlp(0)
