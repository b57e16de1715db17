"""A CI-sized sample of the reader fuzzing (benchmarks/fuzz.py runs 10,000 inputs per reader).

Every damaged input must be refused with a one-line repack error or read correctly; any other
exception fails with the (reader, seed) that reproduces it: `run_case(reader, seed, ...)`."""

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.fuzzing import SEEDS, make_seeds, run_case


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.mark.parametrize("reader", sorted(SEEDS))
def test_damaged_inputs_are_refused_cleanly(reader, seeds, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"fuzz-{reader}")
    outcomes = []

    @given(seed=st.integers(0, 2**32 - 1))
    @settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def case(seed):
        outcomes.append(run_case(reader, seed, seeds[reader], work))

    case()
    assert len(outcomes) >= 250
    assert any(o.startswith("error: ") for o in outcomes)  # the mutations do reach the checks
