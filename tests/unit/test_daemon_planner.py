"""Unit tests of eemt_cleanup.daemon.planner: catch-up once, each slot once, no burst after a
clock jump, jitter bounds and the daylight-saving days, all on an injected "now"."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from eemt_cleanup.daemon.planner import Due, SlotPlanner
from eemt_cleanup.schedule import CronSchedule

BERLIN = ZoneInfo("Europe/Berlin")
HOURLY = CronSchedule("0 * * * *", UTC)


def at(hour: int, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    return datetime(2026, 5, 1, hour, minute, second, microsecond, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def walk(
    planner: SlotPlanner, start: datetime, end: datetime, step: timedelta
) -> list[tuple[datetime, Due]]:
    """Call due() at every ``step`` from ``start`` to ``end``: (when, what) for each Due."""
    handed: list[tuple[datetime, Due]] = []
    now = start
    while now <= end:
        found = planner.due(now)
        if found is not None:
            handed.append((now, found))
        now += step
    return handed


# --- start and catch-up --------------------------------------------------------------------


def test_first_start_without_a_recorded_slot_catches_nothing_up() -> None:
    planner = SlotPlanner(HOURLY)
    assert planner.start(at(10, 30), None) is None
    assert planner.slot == at(11)
    assert planner.fire_at == at(11)
    assert planner.due(at(10, 30)) is None


@pytest.mark.parametrize("recorded_hour", [9, 7, 1])
def test_start_after_missed_slots_catches_up_the_latest_one_once(recorded_hour: int) -> None:
    planner = SlotPlanner(HOURLY)
    caught = planner.start(at(10, 30), at(recorded_hour))
    assert caught == Due(at(10), catch_up=True)
    # The slots before it are not handed out as well: no burst.
    assert planner.due(at(10, 30)) is None
    assert planner.due(at(10, 59, 59)) is None
    assert planner.slot == at(11)


def test_start_with_three_missed_slots_gives_exactly_one_due() -> None:
    planner = SlotPlanner(HOURLY)
    handed = [planner.start(at(10, 30), at(7))]  # 08:00, 09:00 and 10:00 were missed
    handed += [due for _, due in walk(planner, at(10, 30), at(10, 59), timedelta(seconds=30))]
    assert handed == [Due(at(10), catch_up=True)]


@pytest.mark.parametrize(
    "recorded",
    [
        pytest.param(at(10), id="utc"),
        pytest.param(at(10).astimezone(BERLIN), id="same-instant-other-zone"),
        pytest.param(at(10, 0, 30), id="recorded-after-the-slot"),
    ],
)
def test_start_with_the_last_slot_recorded_catches_nothing_up(recorded: datetime) -> None:
    planner = SlotPlanner(HOURLY)
    assert planner.start(at(10, 30), recorded) is None
    assert planner.slot == at(11)


def test_start_exactly_on_a_slot_that_was_not_recorded_catches_it_up() -> None:
    planner = SlotPlanner(HOURLY)
    assert planner.start(at(10), at(9)) == Due(at(10), catch_up=True)
    assert planner.slot == at(11)


# --- due() -----------------------------------------------------------------------------------


def test_due_hands_out_each_slot_once_when_its_time_has_come() -> None:
    planner = SlotPlanner(HOURLY)
    planner.start(at(10, 30), None)
    assert planner.due(at(10, 59, 59, 999_999)) is None
    assert planner.due(at(11)) == Due(at(11))
    assert planner.due(at(11)) is None
    assert planner.due(at(11, 30)) is None
    assert planner.slot == at(12)
    assert planner.due(at(11, 59, 59)) is None
    assert planner.due(at(12, 0, 5)) == Due(at(12))
    assert planner.slot == at(13)


def test_due_over_a_day_hands_out_every_hour_once() -> None:
    planner = SlotPlanner(HOURLY)
    planner.start(at(0, 30), None)
    handed = walk(planner, at(0, 30), at(23, 30), timedelta(seconds=45))
    assert [due.slot for _, due in handed] == [at(hour) for hour in range(1, 24)]
    assert not any(due.catch_up for _, due in handed)
    for when, due in handed:
        assert timedelta(0) <= when - due.slot < timedelta(seconds=45)


def test_due_before_start_is_none() -> None:
    planner = SlotPlanner(HOURLY)
    assert planner.due(at(12)) is None
    assert planner.seconds_until_fire(at(12)) is None


def test_seconds_until_fire_counts_down_to_zero() -> None:
    planner = SlotPlanner(HOURLY)
    planner.start(at(10, 30), None)
    assert planner.seconds_until_fire(at(10, 30)) == 1800
    assert planner.seconds_until_fire(at(10, 59, 59)) == 1
    assert planner.seconds_until_fire(at(11, 0, 10)) == 0


def test_clock_jump_over_five_slots_gives_one_due_not_five() -> None:
    planner = SlotPlanner(HOURLY)
    planner.start(at(10, 30), None)  # armed for 11:00
    # Suspended at 10:30, resumed at 16:30: 11:00 to 16:00 have all passed.
    handed = [due for _, due in walk(planner, at(16, 30), at(16, 59), timedelta(seconds=10))]
    assert len(handed) == 1
    assert handed[0].catch_up is False
    assert at(11) <= handed[0].slot <= at(16)
    # The next one is the first slot after the resume, not one of the skipped ones.
    assert planner.slot == at(17)
    assert planner.due(at(17)) == Due(at(17))


def test_restart_right_after_a_jumped_run_catches_nothing_up() -> None:
    planner = SlotPlanner(HOURLY)
    planner.start(at(10, 30), None)
    jumped = planner.due(at(16, 30))
    assert jumped is not None
    # What the daemon records as the last scheduled slot is jumped.slot; it restarts.
    restarted = SlotPlanner(HOURLY)
    assert restarted.start(at(16, 45), jumped.slot) is None


# --- jitter ----------------------------------------------------------------------------------


def test_jitter_fires_each_slot_once_within_the_jitter_after_it() -> None:
    jitter = 600.0
    planner = SlotPlanner(HOURLY, jitter_seconds=jitter, rng=random.Random(20260501))
    planner.start(at(0, 30), None)
    delays: list[float] = []
    for index in range(200):
        slot = at(1) + timedelta(hours=index)
        assert planner.slot == slot
        fire_at = planner.fire_at
        assert fire_at is not None
        assert slot <= fire_at <= slot + timedelta(seconds=jitter)
        delays.append((fire_at - slot).total_seconds())
        assert planner.due(slot - timedelta(seconds=1)) is None
        assert planner.due(fire_at - timedelta(microseconds=1)) is None
        assert planner.due(fire_at) == Due(slot)
        assert planner.due(fire_at) is None
    # A delay drawn per slot, spread over the range.
    assert len(set(delays)) == len(delays)
    assert min(delays) < 0.1 * jitter
    assert max(delays) > 0.9 * jitter


def test_jitter_with_the_same_seed_gives_the_same_start_times() -> None:
    def fire_times(seed: int) -> list[datetime]:
        planner = SlotPlanner(HOURLY, jitter_seconds=300, rng=random.Random(seed))
        planner.start(at(0, 30), None)
        times: list[datetime] = []
        for _ in range(20):
            assert planner.fire_at is not None
            times.append(planner.fire_at)
            planner.due(planner.fire_at)
        return times

    assert fire_times(5) == fire_times(5)
    assert fire_times(5) != fire_times(6)


def test_catch_up_is_not_delayed_by_the_jitter() -> None:
    planner = SlotPlanner(HOURLY, jitter_seconds=900, rng=random.Random(1))
    assert planner.start(at(10, 30), at(8)) == Due(at(10), catch_up=True)
    assert planner.slot == at(11)
    assert planner.fire_at is not None
    assert at(11) <= planner.fire_at <= at(11, 15)


# --- daylight-saving days --------------------------------------------------------------------


def test_planner_over_the_berlin_fall_back_day_hands_out_two_oclock_once() -> None:
    planner = SlotPlanner(CronSchedule("0 2 * * *", BERLIN))
    start = utc("2026-10-24T12:00:00+02:00")
    assert planner.start(start, None) is None
    handed = walk(planner, start, utc("2026-10-26T12:00:00+01:00"), timedelta(minutes=1))
    assert [due.slot.isoformat() for _, due in handed] == [
        "2026-10-25T02:00:00+02:00",  # the first pass of the repeated hour only
        "2026-10-26T02:00:00+01:00",
    ]
    assert [when for when, _ in handed] == [
        utc("2026-10-25T00:00:00+00:00"),
        utc("2026-10-26T01:00:00+00:00"),
    ]


def test_planner_over_the_berlin_spring_forward_day_fires_once_after_the_gap() -> None:
    planner = SlotPlanner(CronSchedule("30 2 * * *", BERLIN))
    start = utc("2026-03-28T12:00:00+01:00")
    planner.start(start, None)
    handed = walk(planner, start, utc("2026-03-30T12:00:00+02:00"), timedelta(minutes=1))
    assert [due.slot.isoformat() for _, due in handed] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_restart_in_the_repeated_hour_does_not_catch_up_its_slot_again() -> None:
    # 02:00 CEST ran and was recorded; the daemon restarts at 02:30 CET, an hour later.
    schedule = CronSchedule("0 2 * * *", BERLIN)
    recorded = utc("2026-10-25T02:00:00+02:00")
    planner = SlotPlanner(schedule)
    assert planner.start(utc("2026-10-25T02:30:00+01:00"), recorded) is None
    assert planner.slot is not None
    assert planner.slot.isoformat() == "2026-10-26T02:00:00+01:00"


def test_start_in_the_repeated_hour_after_a_missed_slot_catches_it_up_once() -> None:
    schedule = CronSchedule("0 2 * * *", BERLIN)
    planner = SlotPlanner(schedule)
    caught = planner.start(utc("2026-10-25T02:30:00+01:00"), utc("2026-10-24T02:00:00+02:00"))
    assert caught is not None
    assert caught.catch_up is True
    assert caught.slot.isoformat() == "2026-10-25T02:00:00+02:00"
    handed = walk(
        planner,
        utc("2026-10-25T02:30:00+01:00"),
        utc("2026-10-25T23:00:00+01:00"),
        timedelta(minutes=1),
    )
    assert handed == []
