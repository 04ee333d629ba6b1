"""The one wall-clock learning-rate schedule and the process start time that time budgets count from."""

import time

import pytest

from spinebrain.training.clock import clock_cosine, process_start_time


def test_clock_cosine_warms_up_then_decays_to_the_floor():
    assert clock_cosine(0.0, warmup=0.1, warmup_from=0.1) == pytest.approx(0.1)
    assert clock_cosine(0.05, warmup=0.1, warmup_from=0.1) == pytest.approx(0.55)
    assert clock_cosine(0.1, warmup=0.1) == pytest.approx(1.0)
    assert clock_cosine(0.55, warmup=0.1, floor=0.2) == pytest.approx(0.6)  # half-way down the cosine
    assert clock_cosine(1.0, warmup=0.1, floor=0.2) == pytest.approx(0.2)


def test_clock_cosine_clamps_time_outside_the_run():
    assert clock_cosine(-3.0, floor=0.05) == pytest.approx(1.0)
    assert clock_cosine(7.0, floor=0.05) == pytest.approx(0.05)
    assert isinstance(clock_cosine(0.3), float)  # a numpy scalar in an optimizer breaks weights_only loads


def test_process_start_time_is_before_now():
    started = process_start_time()
    assert started <= time.time()
    assert time.time() - started < 3600 * 24
