"""Length distributions: the exact moments are the moments of what they sample."""

import numpy as np
import pytest

from llmstab.fluid_models.distributions import Deterministic, Empirical, Geometric, Poisson, Uniform

DISTRIBUTIONS = [Deterministic(129), Geometric(112), Geometric(1), Poisson(32), Poisson(1), Uniform(3, 40),
                 Empirical(np.array([1, 5, 5, 200]))]


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=repr)
def test_exact_moments_match_samples(dist):
    x = dist.sample(np.random.default_rng(7), 400_000).astype(float)
    assert x.min() >= 1 and (dist.max is None or x.max() <= dist.max)
    assert x.mean() == pytest.approx(float(dist.mean), rel=0.01)
    assert (x**2).mean() == pytest.approx(float(dist.second_moment), rel=0.03)


def test_boundedness():
    assert [d.bounded for d in DISTRIBUTIONS] == [True, False, False, False, False, True, True]
