"""The five-request worked example of Li-Dai-Peng (Fig. 8), batch for batch."""

import pytest

from llmstab.fluid_models.policies import make_policy
from llmstab.fluid_models.simulation.replay import replay

START = [("A", 0, 2), ("B", 0, 4), ("C", 0, 3)]
ARRIVALS = {1: [("D", 1, 1), ("E", 1, 1)]}  # D and E arrive during the first batch


# The paper's batch sequences (policy, b_max, batches); tests/test_simulator.py checks the simulator against them too.
PAPER_SEQUENCES = [
    ("vllm", 4, "{Ad,Bd,Cd} | {Dp,Ep} | {Ad,Bd,Cd,Dd} | {Bd,Cd,Ed} | {Bd}"),
    ("fastertransformer", 4, "{Ad,Bd,Cd} | {Ad,Bd,Cd} | {Bd,Cd} | {Bd} | {Dp,Ep} | {Dd,Ed}"),
    ("sarathi", 4, "{Ad,Bd,Cd} | {Ad,Bd,Cd,Dp} | {Bd,Cd,Dd,Ep} | {Bd,Ed}"),
    ("orca", 5, "{Ad,Bd,Cd} | {Ad,Bd,Cd,Dp,Ep} | {Bd,Cd,Dd,Ed} | {Bd}"),
]


@pytest.mark.parametrize("policy, b_max, expected", PAPER_SEQUENCES)
def test_paper_batch_sequences(policy, b_max, expected):
    assert " | ".join(replay(make_policy(policy), START, b_max, arrivals=ARRIVALS)) == expected


def test_policies_differ_on_the_example():
    """The example separates the four schedulers: no two give the same sequence at b_max = 4."""
    runs = {name: tuple(replay(make_policy(name), START, 4, arrivals=ARRIVALS))
            for name in ("vllm", "fastertransformer", "sarathi", "orca")}
    assert len(set(runs.values())) == 4
