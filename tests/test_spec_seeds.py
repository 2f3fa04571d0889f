"""Seeds in a spec: the run seeds (`seeds`) and the synthetic generator's `dataset.seed`.

A seed seeds numpy's legacy generator, whose range is 0 .. 2**32 - 1 = 4,294,967,295 (np.random.seed
refuses anything outside it), so a spec is refused outright for a seed that would only fail once its
run starts. The refusal names the file, the field and the value.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.errors import SpecError
from bench.spec import load_spec

from .conftest import MINIMAL_SPEC

LARGEST = 4_294_967_295  # 2**32 - 1


def with_seeds(seeds: str) -> str:
    return MINIMAL_SPEC.replace("seeds = [0]", f"seeds = {seeds}")


def with_dataset_seed(seed: str) -> str:
    return MINIMAL_SPEC.replace('name = "synthetic"', f'name = "synthetic"\nseed = {seed}')


def test_numpy_draws_the_same_line():
    np.random.seed(0)
    np.random.seed(LARGEST)
    for outside in (-1, LARGEST + 1):
        with pytest.raises(ValueError):
            np.random.seed(outside)


@pytest.mark.parametrize("seeds,expected", [
    ("[0]", (0,)),
    (f"[{LARGEST}]", (LARGEST,)),
    (f"[0, 1, {LARGEST}]", (0, 1, LARGEST)),
    ("7", (7,)),  # a scalar is a one-element list
])
def test_seeds_at_the_bounds_are_accepted(write_spec, seeds, expected):
    spec = load_spec(write_spec(with_seeds(seeds)))
    assert spec.seeds == expected
    assert [r.seed for r in spec.runs()] == list(expected)


@pytest.mark.parametrize("seeds,field,value,problem", [
    ("[-1]", "seeds[0]", "-1", "must be between 0 and 4294967295"),
    (f"[{LARGEST + 1}]", "seeds[0]", str(LARGEST + 1), "must be between 0 and 4294967295"),
    ("[-9223372036854775808]", "seeds[0]", "-9223372036854775808", "must be between 0 and 4294967295"),
    ("[9223372036854775807]", "seeds[0]", "9223372036854775807", "must be between 0 and 4294967295"),
    (f"[0, 1, {LARGEST + 1}]", "seeds[2]", str(LARGEST + 1), "must be between 0 and 4294967295"),  # any position
    ("[3, -2]", "seeds[1]", "-2", "must be between 0 and 4294967295"),
    ("[1.5]", "seeds[0]", "1.5", "must be an integer"),
    ("[1.0]", "seeds[0]", "1.0", "must be an integer"),
    ('["1"]', "seeds[0]", "'1'", "must be an integer"),
    ("[true]", "seeds[0]", "True", "not a boolean"),
    ("[false, 1]", "seeds[0]", "False", "not a boolean"),
    ("[3, 3]", "seeds", "[3, 3]", "has duplicates"),
    ("[0, 1, 0]", "seeds", "[0, 1, 0]", "has duplicates"),
    ("[]", "seeds", "[]", "needs at least one seed"),
])
def test_seeds_out_of_range_or_not_integers_are_refused(write_spec, seeds, field, value, problem):
    path = write_spec(with_seeds(seeds))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: {value} ")
    assert info.value.field == field
    assert problem in message


@pytest.mark.parametrize("seed", [0, LARGEST])
def test_dataset_seed_at_the_bounds_is_accepted(write_spec, seed):
    assert load_spec(write_spec(with_dataset_seed(str(seed)))).dataset.seed == seed


@pytest.mark.parametrize("seed,problem", [
    ("-1", "must be between 0 and 4294967295"), (str(LARGEST + 1), "must be between 0 and 4294967295"),
    ("2.5", "must be an integer"), ("true", "not a boolean"),
])
def test_dataset_seed_out_of_range_is_refused(write_spec, seed, problem):
    path = write_spec(with_dataset_seed(seed))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    value = {"true": "True"}.get(seed, seed)
    assert str(info.value).startswith(f"{path}: dataset.seed: {value} ")
    assert info.value.field == "dataset.seed"
    assert problem in str(info.value)
