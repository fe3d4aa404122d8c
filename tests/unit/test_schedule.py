"""Unit tests of eemt_cleanup.schedule: cron fire times across daylight-saving days in two
zones, strictly-after and at-or-before, expressions that cannot fire, zones and jitter.

Every time is injected: nothing here depends on today's date.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from eemt_cleanup.config.loader import load_config
from eemt_cleanup.config.schema import Schedule
from eemt_cleanup.errors import ConfigError
from eemt_cleanup.schedule import (
    CronSchedule,
    ScheduleError,
    check_expression,
    jitter_delay,
    normalise,
    zone_label,
    zone_named,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

BERLIN_SPRING = date(2026, 3, 29)  # 02:00 CET -> 03:00 CEST: 02:xx does not exist
BERLIN_FALL = date(2026, 10, 25)  # 03:00 CEST -> 02:00 CET: 02:xx happens twice
NEW_YORK_SPRING = date(2026, 3, 8)  # 02:00 EST -> 03:00 EDT
NEW_YORK_FALL = date(2026, 11, 1)  # 02:00 EDT -> 01:00 EST: 01:xx happens twice

TRANSITION_DAYS = [
    pytest.param(BERLIN, BERLIN_SPRING, id="berlin-spring-forward"),
    pytest.param(BERLIN, BERLIN_FALL, id="berlin-fall-back"),
    pytest.param(NEW_YORK, NEW_YORK_SPRING, id="new-york-spring-forward"),
    pytest.param(NEW_YORK, NEW_YORK_FALL, id="new-york-fall-back"),
]
DAILY = ["0 2 * * *", "30 1 * * *", "30 2 * * *"]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def noon_before(day: date, zone: tzinfo) -> datetime:
    previous = day - timedelta(days=1)
    return datetime(previous.year, previous.month, previous.day, 12, tzinfo=zone)


def fires_on(schedule: CronSchedule, day: date, count: int = 4) -> list[datetime]:
    """The fires whose local date is ``day``, from upcoming() started the noon before."""
    fires = schedule.upcoming(noon_before(day, schedule.zone), count)
    assert fires[-1].astimezone(schedule.zone).date() > day, "the iteration must pass the day"
    return [fire for fire in fires if fire.astimezone(schedule.zone).date() == day]


# --- the test data really are transition days ----------------------------------------------


@pytest.mark.parametrize(("zone", "day"), TRANSITION_DAYS)
def test_each_transition_day_changes_the_utc_offset(zone: ZoneInfo, day: date) -> None:
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    noon = midnight.replace(hour=12)
    assert midnight.utcoffset() != noon.utcoffset()


# --- daily expressions fire once on both transition days -----------------------------------


@pytest.mark.parametrize("expression", DAILY)
@pytest.mark.parametrize(("zone", "day"), TRANSITION_DAYS)
def test_daily_expression_fires_exactly_once_on_a_transition_day(
    zone: ZoneInfo, day: date, expression: str
) -> None:
    fires = fires_on(CronSchedule(expression, zone), day)
    assert len(fires) == 1, [fire.isoformat() for fire in fires]


@pytest.mark.parametrize(
    ("zone", "expression", "expected"),
    [
        # Spring: 02:00 and 02:30 do not exist; they fire at the first minute after the gap.
        (BERLIN, "0 2 * * *", "2026-03-29T03:00:00+02:00"),
        (BERLIN, "30 2 * * *", "2026-03-29T03:00:00+02:00"),
        (BERLIN, "30 1 * * *", "2026-03-29T01:30:00+01:00"),
        (NEW_YORK, "0 2 * * *", "2026-03-08T03:00:00-04:00"),
        (NEW_YORK, "30 2 * * *", "2026-03-08T03:00:00-04:00"),
        (NEW_YORK, "30 1 * * *", "2026-03-08T01:30:00-05:00"),
        # Autumn: a repeated wall-clock time fires on its first pass only (summer offset).
        (BERLIN, "0 2 * * *", "2026-10-25T02:00:00+02:00"),
        (BERLIN, "30 2 * * *", "2026-10-25T02:30:00+02:00"),
        (BERLIN, "30 1 * * *", "2026-10-25T01:30:00+02:00"),
        (NEW_YORK, "0 2 * * *", "2026-11-01T02:00:00-05:00"),
        (NEW_YORK, "30 2 * * *", "2026-11-01T02:30:00-05:00"),
        (NEW_YORK, "30 1 * * *", "2026-11-01T01:30:00-04:00"),
    ],
)
def test_transition_day_fires_at_the_exact_instant(
    zone: ZoneInfo, expression: str, expected: str
) -> None:
    day = date.fromisoformat(expected[:10])
    (fire,) = fires_on(CronSchedule(expression, zone), day)
    assert fire.isoformat() == expected
    assert fire.astimezone(UTC) == utc(expected)
    assert fire.tzinfo is not None
    assert zone_label(fire.tzinfo) == zone.key


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        (BERLIN, date(2026, 6, 10), "2026-06-10T02:00:00+02:00"),
        (BERLIN, date(2026, 1, 15), "2026-01-15T02:00:00+01:00"),
        (NEW_YORK, date(2026, 6, 10), "2026-06-10T02:00:00-04:00"),
        (NEW_YORK, date(2026, 1, 15), "2026-01-15T02:00:00-05:00"),
    ],
)
def test_normal_day_fires_once_at_two(zone: ZoneInfo, day: date, expected: str) -> None:
    fires = fires_on(CronSchedule("0 2 * * *", zone), day)
    assert [fire.isoformat() for fire in fires] == [expected]


def test_second_pass_of_the_repeated_hour_does_not_fire_again() -> None:
    schedule = CronSchedule("0 2 * * *", BERLIN)
    second_two_oclock = utc("2026-10-25T02:00:00+01:00")  # 01:00 UTC, the hour repeated
    assert schedule.next_after(second_two_oclock).isoformat() == "2026-10-26T02:00:00+01:00"
    assert schedule.next_after(utc("2026-10-25T02:00:00+02:00")).isoformat() == (
        "2026-10-26T02:00:00+01:00"
    )
    assert schedule.previous_at_or_before(utc("2026-10-25T02:30:00+01:00")).isoformat() == (
        "2026-10-25T02:00:00+02:00"
    )


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        pytest.param(BERLIN, "2026-03-29T00:00:00+01:00", id="berlin-gap"),
        pytest.param(BERLIN, "2026-10-25T01:00:00+02:00", id="berlin-repeat"),
        pytest.param(NEW_YORK, "2026-03-08T00:00:00-05:00", id="new-york-gap"),
        pytest.param(NEW_YORK, "2026-11-01T00:00:00-04:00", id="new-york-repeat"),
    ],
)
def test_every_thirty_minutes_keeps_a_steady_pace_across_the_transition(
    zone: ZoneInfo, start: str
) -> None:
    fires = CronSchedule("*/30 * * * *", zone).upcoming(utc(start), 12)
    instants = [fire.astimezone(UTC) for fire in fires]
    gaps = {later - earlier for earlier, later in pairwise(instants)}
    assert gaps == {timedelta(minutes=30)}
    assert instants[0] == utc(start) + timedelta(minutes=30)
    offsets = {fire.utcoffset() for fire in fires}
    assert len(offsets) == 2, "the window must span the transition"
    for fire in fires:
        assert fire.minute in (0, 30)
        assert fire.second == 0


def test_every_thirty_minutes_skips_the_wall_clock_times_that_do_not_exist() -> None:
    fires = CronSchedule("*/30 * * * *", BERLIN).upcoming(utc("2026-03-29T00:00:00+01:00"), 6)
    assert [fire.strftime("%H:%M%z") for fire in fires] == [
        "00:30+0100",
        "01:00+0100",
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
        "04:00+0200",
    ]


# --- strictly after, at or before ----------------------------------------------------------


@pytest.mark.parametrize("zone", [UTC, BERLIN, NEW_YORK])
def test_next_after_is_strictly_after(zone: ZoneInfo) -> None:
    schedule = CronSchedule("0 2 * * *", zone)
    fire = datetime(2026, 6, 10, 2, tzinfo=zone)
    day_after = datetime(2026, 6, 11, 2, tzinfo=zone)
    assert schedule.next_after(fire) == day_after
    assert schedule.next_after(fire - timedelta(microseconds=1)) == fire
    assert schedule.next_after(fire - timedelta(seconds=1)) == fire
    assert schedule.next_after(fire + timedelta(microseconds=500_000)) == day_after
    # The same instant given in another zone gives the same answer.
    assert schedule.next_after(fire.astimezone(UTC) - timedelta(minutes=1)) == fire


@pytest.mark.parametrize("zone", [UTC, BERLIN, NEW_YORK])
def test_previous_at_or_before_includes_the_moment_itself(zone: ZoneInfo) -> None:
    schedule = CronSchedule("0 2 * * *", zone)
    fire = datetime(2026, 6, 10, 2, tzinfo=zone)
    day_before = datetime(2026, 6, 9, 2, tzinfo=zone)
    assert schedule.previous_at_or_before(fire) == fire
    assert schedule.previous_at_or_before(fire + timedelta(microseconds=500_000)) == fire
    assert schedule.previous_at_or_before(fire + timedelta(hours=23)) == fire
    assert schedule.previous_at_or_before(fire - timedelta(microseconds=1)) == day_before
    assert schedule.previous_at_or_before(fire.astimezone(UTC)) == fire


def test_fire_times_are_aware_and_in_the_schedules_zone() -> None:
    schedule = CronSchedule("15 4 * * 1", NEW_YORK)
    fire = schedule.next_after(utc("2026-06-10T00:00:00+00:00"))
    assert fire.tzinfo is not None
    assert zone_label(fire.tzinfo) == "America/New_York"
    assert fire.isoformat() == "2026-06-15T04:15:00-04:00"  # the next Monday


def test_upcoming_lists_count_increasing_fires_starting_with_next_after() -> None:
    schedule = CronSchedule("0 */6 * * *", BERLIN)
    moment = utc("2026-10-24T20:00:00+00:00")
    fires = schedule.upcoming(moment, 7)
    assert len(fires) == 7
    assert fires[0] == schedule.next_after(moment)
    assert all(a < b for a, b in pairwise(fires))
    assert all(fire > moment for fire in fires)


def test_schedule_of_a_config_section_uses_its_expression_and_zone() -> None:
    plan = CronSchedule.of(Schedule(cron="'30 3 * * *'", timezone="America/New_York"))
    assert plan.expression == "30 3 * * *"
    assert zone_label(plan.zone) == "America/New_York"


# --- expressions that cannot make a schedule -----------------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 30 2 *", "never fires: no month in '2' has day '30'"),
        ("0 0 31 4,6 *", "never fires: no month in '4,6' has day '31'"),
        ("0 0 * *", "4 fields; a cron expression has five"),
        ("0 0 * * * *", "6 fields; a cron expression has five"),
        ("61 * * * *", "the minute field is not valid"),
        ("* 24 * * *", "the hour field is not valid"),
        ("0 0 0 * *", "the day-of-month field is not valid"),
        ("0 0 * 13 *", "the month field is not valid"),
        ("0 0 * * 8", "the day-of-week field is not valid"),
        ("@daily", "a cron expression has five (minute hour day-of-month month day-of-week)"),
        ("", "0 fields"),
    ],
)
def test_expression_that_cannot_fire_raises_schedule_error_saying_why(
    expression: str, words: str
) -> None:
    with pytest.raises(ScheduleError) as raised:
        check_expression(expression)
    assert words in str(raised.value)
    assert repr(expression) in str(raised.value)
    with pytest.raises(ScheduleError):
        CronSchedule(expression, BERLIN)


def test_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 29 2 *",  # leap days only, but it fires
        "0 0 30 2 1",  # day-of-month or weekday: Mondays in February
        "0 0 31 1-12 *",
    ],
)
def test_rare_but_possible_expression_is_accepted(expression: str) -> None:
    assert check_expression(expression) == expression
    fire = CronSchedule(expression, UTC).next_after(utc("2026-01-01T00:00:00+00:00"))
    assert fire.year <= 2028


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('"0 2 * * *"', "0 2 * * *"),
        ("'0 2 * * *'", "0 2 * * *"),
        ("  0   2 *  * *  ", "0 2 * * *"),
        ("0\t2 * * *\n", "0 2 * * *"),
    ],
)
def test_pasted_quotes_and_extra_blanks_are_normalised(given: str, expected: str) -> None:
    assert normalise(given) == expected
    assert check_expression(given) == expected


# --- the schedule section of the config ----------------------------------------------------


def config_error(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> str:
    config = tmp_path / "cleanup_config.yaml"
    config.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(config_path=config, environ=environ or {}, cwd=tmp_path)
    return str(raised.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('schedule:\n  cron: "0 0 30 2 *"\n', ["schedule.cron: ", "never fires"]),
        ('schedule:\n  cron: "61 * * * *"\n', ["schedule.cron: ", "minute field"]),
        ('schedule:\n  cron: "0 2 * *"\n', ["schedule.cron: ", "'0 2 * *'"]),
        ("schedule:\n  timezone: Mars/Olympus\n", ["schedule.timezone: ", "'Mars/Olympus'"]),
        ("schedule:\n  jitter: soon\n", ["schedule.jitter: ", "must be a duration"]),
        ("schedule:\n  jitter: 2d\n", ["schedule.jitter: ", "must be at most 24h"]),
    ],
)
def test_bad_schedule_section_is_a_config_error_naming_the_key(
    tmp_path: Path, body: str, words: list[str]
) -> None:
    message = config_error(tmp_path, body)
    for word in words:
        assert word in message


def test_schedule_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    message = config_error(tmp_path, "{}\n", {"EEMT_CLEANUP_SCHEDULE": "0 0 31 4,6 *"})
    assert "schedule.cron: " in message
    assert "never fires" in message
    assert "EEMT_CLEANUP_SCHEDULE" in message


def test_quoted_schedule_from_the_environment_is_normalised(tmp_path: Path) -> None:
    loaded = load_config(
        environ={"EEMT_CLEANUP_SCHEDULE": '"15 3 * * *"', "EEMT_ENABLE_AUTO_CLEANUP": "false"},
        cwd=tmp_path,
    )
    assert loaded.settings.schedule.cron == "15 3 * * *"
    assert loaded.settings.schedule.enabled is False


def test_jitter_is_read_as_a_duration() -> None:
    assert Schedule(jitter="10m").jitter_seconds == 600
    assert Schedule().jitter_seconds == 0


# --- zones ---------------------------------------------------------------------------------


def test_zone_named_gives_utc_and_iana_zones() -> None:
    assert zone_named("UTC") is UTC
    assert zone_named("Europe/Berlin") == BERLIN
    assert zone_label(zone_named("America/New_York")) == "America/New_York"


@pytest.mark.parametrize("name", ["Mars/Olympus", "America", "", "../etc/passwd"])
def test_unknown_zone_raises_schedule_error_naming_it(name: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        zone_named(name)
    assert str(raised.value) == f"unknown time zone {name!r}"


@pytest.fixture
def berlin_local_time() -> Iterator[None]:
    """TZ=Europe/Berlin for this process, restored afterwards. tzlocal caches the zone it
    found for the life of the process, so the cache is refreshed both ways."""
    import tzlocal

    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    tzlocal.reload_localzone()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()
        tzlocal.reload_localzone()


@pytest.mark.usefixtures("berlin_local_time")
def test_local_zone_follows_tz_with_its_daylight_saving_rules() -> None:
    assert os.environ["TZ"] == "Europe/Berlin"
    zone = zone_named("local")
    assert zone_label(zone) == "Europe/Berlin"
    winter = datetime(2026, 1, 15, 12, tzinfo=zone)
    summer = datetime(2026, 7, 15, 12, tzinfo=zone)
    assert winter.utcoffset() == timedelta(hours=1)
    assert summer.utcoffset() == timedelta(hours=2)
    (fire,) = fires_on(CronSchedule("0 2 * * *", zone), BERLIN_SPRING)
    assert fire.isoformat() == "2026-03-29T03:00:00+02:00"


# --- jitter --------------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.5, 90.0, 600.0, 86400.0])
def test_jitter_delay_stays_within_zero_and_the_jitter(jitter: float) -> None:
    rng = random.Random(20261025)
    delays = [jitter_delay(jitter, rng) for _ in range(20_000)]
    assert all(0.0 <= delay <= jitter for delay in delays)
    # Spread over the whole range, not a constant.
    assert min(delays) < 0.01 * jitter
    assert max(delays) > 0.99 * jitter
    assert 0.45 * jitter < sum(delays) / len(delays) < 0.55 * jitter


def test_jitter_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = [jitter_delay(600, random.Random(7)) for _ in range(3)]
    rng_a, rng_b = random.Random(11), random.Random(11)
    assert [jitter_delay(600, rng_a) for _ in range(50)] == [
        jitter_delay(600, rng_b) for _ in range(50)
    ]
    assert len(set(first)) == 1


@pytest.mark.parametrize("jitter", [0.0, -5.0])
def test_no_jitter_means_no_delay(jitter: float) -> None:
    rng = random.Random(3)
    assert {jitter_delay(jitter, rng) for _ in range(1000)} == {0.0}
    assert jitter_delay(jitter) == 0.0
