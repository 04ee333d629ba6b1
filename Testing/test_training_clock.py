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


def test_next_utc_is_the_next_time_the_clock_shows_it_even_after_midnight():
    from datetime import datetime, timezone

    from spinebrain.errors import InputError
    from spinebrain.training.clock import next_utc

    late = datetime(2026, 11, 30, 23, 50, tzinfo=timezone.utc).timestamp()
    assert next_utc("01:40", now=late) == datetime(2026, 12, 1, 1, 40, tzinfo=timezone.utc).timestamp()
    assert next_utc("23:55", now=late) == late + 5 * 60  # later today
    assert next_utc("23:50", now=late) == late + 24 * 3600  # now is not "next"
    with pytest.raises(InputError, match="HH:MM"):
        next_utc("soon")
