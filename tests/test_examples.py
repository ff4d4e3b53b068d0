"""The examples run, and the digits example meets the accuracy promise of the README."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.slow
def test_digits_int8_golden_within_one_point_of_float():
    example = runpy.run_path(str(EXAMPLES / "digits_mlp.py"))
    results = example["main"](verbose=False)
    float_accuracy, golden_accuracy = results["int8/uint8"]
    assert float_accuracy > 0.95
    assert abs(golden_accuracy - float_accuracy) <= 0.01
    # The narrower schemes are reported; they must still be far better than chance (10%).
    for scheme in ("int4/uint4", "ternary/uint4"):
        assert results[scheme][1] > 0.85, (scheme, results[scheme])
    # 90% pruned (with retraining) and 4-bit shared: within 2 points of the unpruned int8.
    _, compressed = results["int8/uint8 pruned 90% shared 4-bit"]
    assert golden_accuracy - compressed <= 0.02, (golden_accuracy, compressed)
