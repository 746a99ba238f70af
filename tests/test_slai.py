"""SLAI's batches on hand-built states follow ../shared/specs/SLAI.md §3 step by step."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from llmstab.checkers.errors import InputError
from llmstab.checkers.spec import parse_policy
from llmstab.checkers.work_conservation import check_work_conservation
from llmstab.fluid_models.batch_time import Staircase
from llmstab.fluid_models.engine import Engine, KVCache
from llmstab.fluid_models.policies import SLAI, Sarathi
from llmstab.fluid_models.policies.base import (ARRIVAL, BLOCK_SIZE, BLOCKS, CLASS, CLOCK, CTX, DC, EVICT,
                                                FREE_BLOCKS, LAST_BATCH_END, LAST_TOKEN, MEAN_BATCH, NF, NI, PF,
                                                PROMPT, SCRATCH, TAKE_COLUMNS, TAKE_D, TAKE_P, TOTAL_BLOCKS,
                                                unlimited_engine)
from llmstab.fluid_models.simulation.arrivals import Trace
from llmstab.fluid_models.simulation.simulator import simulate

STRICT, RELAXED = 0, 1


def rows(*requests):
    """Rows from dicts: pf, dc, prompt, blocks, cls, arrival, lst (scratch), last (last token), ctx."""
    n = len(requests)
    ri, rf = np.zeros((n, NI), np.int64), np.full((n, NF), np.nan)
    for i, r in enumerate(requests):
        ri[i, PF], ri[i, DC] = r.get("pf", 0), r.get("dc", 5)
        ri[i, PROMPT] = r.get("prompt", ri[i, PF] if ri[i, PF] else 10)
        ri[i, BLOCKS], ri[i, CLASS], ri[i, CTX] = r.get("blocks", 1), r.get("cls", RELAXED), r.get("ctx", 11)
        rf[i, ARRIVAL] = r.get("arrival", float(i))
        rf[i, SCRATCH] = r.get("lst", np.nan)
        rf[i, LAST_TOKEN] = r.get("last", np.nan)
    return ri, rf


def engine(clock=10.0, mean=0.05, last_end=9.9, free=1000, total=1000):
    eng = unlimited_engine()
    eng[CLOCK], eng[MEAN_BATCH], eng[LAST_BATCH_END] = clock, mean, last_end
    eng[FREE_BLOCKS], eng[TOTAL_BLOCKS], eng[BLOCK_SIZE] = free, total, 16
    return eng


def run(policy, ri, rf, eng, b_max=512):
    policy = policy.for_workload(_TwoClasses())
    take = np.zeros((ri.shape[0], TAKE_COLUMNS), np.int64)
    tokens = policy.compiled_kernel()(ri, rf, ri.shape[0], eng, b_max, 2**62, policy.parameters(),
                                      policy.initial_memory(), take)
    return int(tokens), take


class _Slo:
    def __init__(self, tbt):
        self.tbt_s = tbt


class _Class:
    def __init__(self, tbt):
        self.slo = _Slo(tbt)


class _TwoClasses:
    classes = (_Class(0.1), _Class(0.5))  # strict, relaxed


def test_critical_decodes_come_first_then_paused_then_new_prefills_then_the_rest():
    ri, rf = rows(dict(dc=5, lst=9.0, last=1.0),        # 0: critical (LST passed), not in the last batch
                  dict(dc=5, lst=11.0, last=1.0),       # 1: not critical
                  dict(pf=3, prompt=8, blocks=1),       # 2: paused prefill (5 of 8 done)
                  dict(pf=4, blocks=0),                 # 3: new prefill
                  dict(pf=2, blocks=0))                 # 4: new, shorter: first among the new
    tokens, take = run(SLAI(tau=7), ri, rf, engine())
    assert take[:, TAKE_D].tolist() == [1, 0, 0, 0, 0]
    assert take[:, TAKE_P].tolist() == [0, 0, 3, 1, 2]   # 1 + 3 (paused) + 2 (shortest new) + 1 = 7
    assert tokens == 7
    tokens, take = run(SLAI(tau=20), ri, rf, engine())
    assert take[:, TAKE_D].tolist() == [1, 1, 0, 0, 0] and take[:, TAKE_P].tolist() == [0, 0, 3, 4, 2]


def test_last_schedulable_time_is_set_from_the_previous_batch_end_and_delta_follows_kv_use():
    ri, rf = rows(dict(dc=5, lst=0.0, last=9.9, cls=RELAXED),   # decoded in the last batch (ended 9.9)
                  dict(dc=5, lst=0.0, last=9.9, cls=STRICT))
    run(SLAI(), ri, rf, engine(mean=0.04, free=1000, total=1000))
    assert rf[:, SCRATCH] == pytest.approx([9.9 + 0.5 - 5 * 0.04, 9.9 + 0.1 - 5 * 0.04])
    ri, rf = rows(dict(dc=5, lst=0.0, last=9.9))
    run(SLAI(), ri, rf, engine(mean=0.04, free=30, total=1000))          # 97 % used >= 96 %: delta_high
    assert rf[0, SCRATCH] == pytest.approx(9.9 + 0.5 - 10 * 0.04)
    ri, rf = rows(dict(dc=5, lst=0.0, last=9.9))
    run(SLAI(fixed_offset=True), ri, rf, engine(mean=0.04, free=30, total=1000))
    assert rf[0, SCRATCH] == pytest.approx(9.9 + 0.5 - 5 * 0.04)


def test_a_request_not_in_the_last_batch_keeps_its_old_deadline():
    ri, rf = rows(dict(dc=5, lst=3.0, last=2.0))
    run(SLAI(), ri, rf, engine())
    assert rf[0, SCRATCH] == 3.0


def test_spf_puts_strict_users_first_then_shorter_prompts():
    ri, rf = rows(dict(pf=9, blocks=0, cls=RELAXED), dict(pf=3, blocks=0, cls=RELAXED),
                  dict(pf=8, blocks=0, cls=STRICT), dict(pf=6, blocks=0, cls=STRICT))
    _, take = run(SLAI(tau=15), ri, rf, engine())
    assert take[:, TAKE_P].tolist() == [0, 1, 8, 6]       # strict 6, strict 8, then relaxed 3 gets what is left
    _, take = run(SLAI(tau=15, user_priority=False), ri, rf, engine())
    assert take[:, TAKE_P].tolist() == [0, 3, 6, 6]       # 3, 6, 8 (cut to 6)
    _, take = run(SLAI(tau=15, order="fcfs"), ri, rf, engine())
    assert take[:, TAKE_P].tolist() == [9, 3, 3, 0]


def test_beta_caps_all_decodes_and_the_rest_go_in_lst_order():
    ri, rf = rows(*[dict(dc=5, lst=lst, last=1.0) for lst in (12.0, 9.5, 11.0, 9.0, 13.0)])
    _, take = run(SLAI(beta=3), ri, rf, engine())
    assert take[:, TAKE_D].tolist() == [0, 1, 1, 1, 0]    # critical 9.0, 9.5, then the earliest other: 11.0
    _, take = run(SLAI(beta=1), ri, rf, engine())
    assert take[:, TAKE_D].tolist() == [0, 0, 0, 1, 0]


def test_tau_caps_the_batch_below_the_engine_budget():
    ri, rf = rows(dict(pf=900, blocks=0))
    tokens, take = run(SLAI(tau=256), ri, rf, engine(), b_max=512)
    assert tokens == 256 and take[0, TAKE_P] == 256


def test_alpha_counts_requests_holding_kv():
    ri, rf = rows(dict(dc=5, lst=20.0, last=1.0), dict(pf=3, blocks=0), dict(pf=3, blocks=0))
    _, take = run(SLAI(alpha=2), ri, rf, engine())
    assert take[:, TAKE_P].tolist() == [0, 3, 0]


def test_a_decode_without_a_free_block_preempts_the_latest_paused_prefill_else_itself():
    full = dict(ctx=16, blocks=1)   # its next token needs a new block
    ri, rf = rows(dict(dc=5, lst=9.0, last=1.0, **full), dict(pf=3, prompt=8, blocks=1),
                  dict(pf=3, prompt=8, blocks=1))
    _, take = run(SLAI(), ri, rf, engine(free=0))
    assert take[:, EVICT].tolist() == [0, 0, 1] and take[0, TAKE_D] == 1 and take[1, TAKE_P] == 3
    ri, rf = rows(dict(dc=5, lst=9.0, last=1.0, **full))
    _, take = run(SLAI(), ri, rf, engine(free=0))
    assert take[0, EVICT] == 1 and take[0, TAKE_D] == 0
    assert np.isnan(rf[0, SCRATCH])   # a recomputed request gets a fresh deadline after its new prefill


def test_a_decode_whose_last_block_has_room_is_never_preempted():
    # the reference checks the free pool even when the decode needs no block; with the pool empty and no paused
    # prefill that made a decode evict itself (and two requests could take turns doing so forever)
    ri, rf = rows(dict(dc=5, lst=9.0, last=1.0, ctx=9, blocks=3), dict(dc=5, lst=20.0, last=1.0, ctx=9, blocks=3))
    _, take = run(SLAI(), ri, rf, engine(free=0, total=6))
    assert take[:, EVICT].tolist() == [0, 0] and take[:, TAKE_D].tolist() == [1, 1]


def test_admission_leaves_the_blocks_that_running_decodes_need_to_grow():
    full = dict(ctx=16, blocks=1, last=1.0)   # each next token needs a new block
    ri, rf = rows(dict(dc=5, lst=20.0, **full), dict(dc=5, lst=21.0, **full), dict(pf=16, blocks=0))
    _, take = run(SLAI(), ri, rf, engine(free=2, total=4))
    assert take[:, TAKE_D].tolist() == [1, 1, 0] and take[:, EVICT].tolist() == [0, 0, 0]
    assert take[2, TAKE_P] == 0                         # one free block left would not hold both decodes
    _, take = run(SLAI(), ri, rf, engine(free=3, total=4))
    assert take[:, TAKE_D].tolist() == [1, 1, 0] and take[2, TAKE_P] == 16


def test_two_requests_that_fill_the_cache_finish_instead_of_evicting_each_other_forever():
    cache = Engine(Staircase(1, 1, 4), 8, kv_cache=KVCache(blocks=6, block_size=4))
    for prompt, decode in (([0, 1], [10, 10]), ([1, 6, 9], [1, 2, 6])):
        r = simulate(cache, SLAI(tau=8), None, arrivals="trace", trace=Trace([0.0] * len(prompt), prompt, decode))
        assert r.finished.all()


@pytest.mark.parametrize("options, field", [({"tau": 0}, "tau"), ({"alpha": 0}, "alpha"), ({"beta": -1}, "beta"),
                                            ({"memory_limit": 1.5}, "memory_limit"), ({"order": "lifo"}, "order")])
def test_slai_parameters_that_make_no_batch_possible_are_input_errors(options, field):
    with pytest.raises(InputError, match=f"^policy: {field}"):
        parse_policy({"name": "slai", **options})


def test_policy_options_parse_as_in_the_issue():
    p = parse_policy({"name": "slai", "tau": 512, "alpha": 128, "beta": 128, "delta_low": 5, "delta_high": 10,
                      "memory_limit": 0.96, "order": "spf", "user_priority": True})
    assert p == SLAI()
    assert parse_policy({"name": "sarathi", "order": "spf"}) == Sarathi(order="spf")


def test_sarathi_spf_admits_shorter_prompts_first_after_started_ones():
    ri, rf = rows(dict(dc=5, last=1.0), dict(pf=3, prompt=8, blocks=1), dict(pf=9, blocks=0), dict(pf=2, blocks=0))
    tokens, take = run(Sarathi(order="spf"), ri, rf, engine(), b_max=8)
    assert take[:, TAKE_D].tolist() == [1, 0, 0, 0] and take[:, TAKE_P].tolist() == [0, 3, 2, 2]
    _, take = run(Sarathi(), ri, rf, engine(), b_max=8)
    assert take[:, TAKE_P].tolist() == [0, 3, 4, 0]


def test_sarathi_spf_never_prefills_a_request_it_just_preempted():
    ri, rf = rows(dict(dc=5, last=1.0, ctx=16, blocks=1), dict(pf=3, prompt=8, blocks=1))  # the decode needs a block
    _, take = run(Sarathi(order="spf"), ri, rf, engine(free=0), b_max=8)
    assert take[:, EVICT].tolist() == [0, 1] and take[:, TAKE_P].tolist() == [0, 0] and take[0, TAKE_D] == 1


def test_work_conservation_slai_is_conserving_unless_beta_binds():
    assert check_work_conservation(SLAI(tau=1024), random_states=50).work_conserving
    r = check_work_conservation(SLAI(beta=1), random_states=0)
    assert not r.work_conserving and r.batch.tokens < r.max_tokens
    assert sum(1 for p in r.counterexample.prefill_left if p == 0) > 1   # more decodes than beta


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6), st.booleans(), st.floats(8.0, 12.0)),
                min_size=1, max_size=12),
       st.integers(1, 64), st.integers(0, 8), st.integers(1, 8))
def test_batches_respect_tau_beta_and_never_touch_a_request_twice(reqs, tau, beta, alpha):
    ri, rf = rows(*[dict(pf=pf, dc=dc, blocks=1 if (started or pf == 0) else 0,
                         prompt=pf + (3 if started else 0) if pf else 10, lst=lst, last=1.0)
                    for pf, dc, started, lst in reqs])
    tokens, take = run(SLAI(tau=tau, beta=beta, alpha=alpha), ri, rf, engine())
    assert tokens == take[:, TAKE_P].sum() + take[:, TAKE_D].sum() <= tau
    assert take[:, TAKE_D].sum() <= beta
    assert ((take[:, TAKE_P] > 0) & (take[:, TAKE_D] > 0)).sum() == 0
    assert (take[:, TAKE_P] <= ri[:, PF]).all() and (take[:, TAKE_D][ri[:, PF] > 0] == 0).all()
