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


def test_percent_sign_in_turbomind_config_is_refused_in_one_line(seeds, tmp_path):
    """Found by fuzzing: configparser's interpolation raised its own error on a '%' in a value."""
    import shutil

    from repack.errors import RepackError
    from tests.fuzzing import exercise
    case = tmp_path / "w4"
    shutil.copytree(seeds["turbomind_w4"], case)
    ini = next(case.rglob("config.ini"))
    ini.write_text(ini.read_text().replace("inter_size = ", "inter_size = 2%"))
    with pytest.raises(RepackError, match="inter_size") as e:
        exercise(case)
    assert "\n" not in str(e.value)
