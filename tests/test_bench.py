"""`morl bench rollout`'s sizing: the timed program's steps per call follow from the probe's price of one step."""

from __future__ import annotations

import pytest

from morl.bench import PROBE_STEPS, bench_engine, steps_per_call


@pytest.mark.parametrize(
    "seconds_per_step, max_steps, target, expected",
    [
        (1e-6, 1000, 0.5, 1000),  # cheap steps: the user's --num-steps
        (1e-2, 1000, 0.5, 50),  # an MJX robot at thousands of envs: about target seconds per call
        (1.0, 1000, 0.5, PROBE_STEPS),  # never below the probe's length
        (1.0, 8, 0.5, 8),  # nor above --num-steps, even when that is below the probe
        (0.0, 300, 0.5, 300),  # an unmeasurable step: the maximum
    ],
)
def test_steps_per_call_bounds(seconds_per_step, max_steps, target, expected):
    assert steps_per_call(seconds_per_step, max_steps, target) == expected


def test_bench_engine_reports_compile_apart_and_counts_every_step():
    row = bench_engine("deep-sea-treasure-v0", num_envs=8, num_steps=64, min_seconds=0.2)
    length = int(row.what.split("; ")[-1].split(" steps/call")[0])
    assert PROBE_STEPS <= length <= 64
    assert row.compile_seconds is not None and row.compile_seconds >= 0.0
    assert row.steps > 0 and row.steps % (8 * length) == 0  # whole calls of num_envs x length steps
    assert row.seconds >= 0.2
