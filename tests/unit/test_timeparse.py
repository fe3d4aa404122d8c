"""Unit tests of eemt_cleanup.timeparse: every stored timestamp format of SPEC §2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from eemt_cleanup.timeparse import format_utc, parse_timestamp, resolve_zone, utc_now

PHOENIX = ZoneInfo("America/Phoenix")  # UTC-7 all year: no DST, deterministic
NEW_YORK = ZoneInfo("America/New_York")

# 2024-01-20 02:00:01 UTC, the instant most cases below describe.
INSTANT = datetime(2024, 1, 20, 2, 0, 1, tzinfo=UTC)
EPOCH = 1_705_716_001


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        # SQLite CURRENT_TIMESTAMP: naive, in the given zone.
        ("2024-01-20 02:00:01", UTC, INSTANT),
        ("2024-01-20 02:00:01", PHOENIX, INSTANT + timedelta(hours=7)),
        # datetime.now().isoformat(): naive with microseconds.
        ("2024-01-20T02:00:01.123456", UTC, INSTANT.replace(microsecond=123456)),
        (
            "2024-01-20T02:00:01.123456",
            PHOENIX,
            INSTANT.replace(microsecond=123456) + timedelta(hours=7),
        ),
        # Explicit offsets win over the naive zone.
        ("2024-01-20T02:00:01+00:00", PHOENIX, INSTANT),
        ("2024-01-20T02:00:01.5+00:00", PHOENIX, INSTANT.replace(microsecond=500000)),
        ("2024-01-19T19:00:01-07:00", UTC, INSTANT),
        ("2024-01-20T07:30:01+05:30", UTC, INSTANT),
        ("2024-01-20T02:00:01Z", PHOENIX, INSTANT),
        ("2024-01-20T02:00:01z", PHOENIX, INSTANT),
        ("2024-01-20 02:00:01Z", PHOENIX, INSTANT),
        ("2024-01-20T02:00:01.123456Z", UTC, INSTANT.replace(microsecond=123456)),
        # Surrounding white space is ignored.
        ("  2024-01-20 02:00:01\n", UTC, INSTANT),
    ],
)
def test_text_timestamp_parses_to_exact_utc_instant(
    value: str, zone: tzinfo, expected: datetime
) -> None:
    parsed = parse_timestamp(value, zone)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EPOCH, INSTANT),
        (float(EPOCH), INSTANT),
        (EPOCH + 0.5, INSTANT.replace(microsecond=500000)),
        (str(EPOCH), INSTANT),
        (f" {EPOCH} ", INSTANT),
        (f"{EPOCH}.5", INSTANT.replace(microsecond=500000)),
        (f"{EPOCH}.", INSTANT),
        (str(EPOCH).encode(), INSTANT),
    ],
)
def test_epoch_seconds_parse_to_utc_instant_whatever_the_zone(
    value: object, expected: datetime
) -> None:
    assert parse_timestamp(value, PHOENIX) == expected
    assert parse_timestamp(value, None) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"2024-01-20 02:00:01", INSTANT),
        (b"2024-01-20T02:00:01.123456", INSTANT.replace(microsecond=123456)),
        (b"2024-01-20T02:00:01Z", INSTANT),
    ],
)
def test_ascii_bytes_parse_like_text(value: bytes, expected: datetime) -> None:
    assert parse_timestamp(value, UTC) == expected


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "not a date",
        "2024-13-01 00:00:00",
        "2024-01-32 00:00:00",
        "2024-01-20 25:00:00",
        "2024-01-20T02:00:01+25:00",
        "20 Jan 2024 02:00:01",
        "1.2.3",
        "0x65ab1bd1",
        "1.7e9",
        "NaN",
        "inf",
        "-inf",
        "2024-01-20T02:00:01ZZ",
        b"\xff\xfe2024",
    ],
)
def test_garbage_is_unparseable(value: object) -> None:
    assert parse_timestamp(value, UTC) is None


@pytest.mark.parametrize(
    "value",
    ["", " ", "   \t\n", b"", b"   ", None, True, False, [], {}, object(), 3 + 4j],
)
def test_null_empty_blank_bool_and_foreign_types_are_unparseable(value: object) -> None:
    assert parse_timestamp(value, UTC) is None


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        "0",
        -1,
        -EPOCH,
        -float(EPOCH),
        f"-{EPOCH}",
        631_151_999,  # 1989-12-31 23:59:59: before the plausible range
        32_503_680_000,  # 3000-01-01
        "32503680000",
        7_258_118_401,  # one second after 2200-01-01
        float("nan"),
        float("inf"),
        float("-inf"),
        2**63 - 1,
    ],
)
def test_implausible_epoch_is_unparseable(value: object) -> None:
    assert parse_timestamp(value, UTC) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (631_152_000, datetime(1990, 1, 1, tzinfo=UTC)),
        (7_258_118_400, datetime(2200, 1, 1, tzinfo=UTC)),
    ],
)
def test_epoch_at_edge_of_plausible_range_is_accepted(value: int, expected: datetime) -> None:
    assert parse_timestamp(value, UTC) == expected


@pytest.mark.parametrize(
    "value",
    [
        EPOCH * 1000,  # JavaScript's Date.now(), Java's currentTimeMillis()
        str(EPOCH * 1000),
        float(EPOCH * 1000),
        EPOCH * 1_000_000,  # microseconds
        EPOCH * 1_000_000_000,  # time.time_ns()
    ],
)
def test_epoch_milliseconds_microseconds_and_nanoseconds_parse(value: object) -> None:
    assert parse_timestamp(value, UTC) == datetime.fromtimestamp(EPOCH, tz=UTC)


@pytest.mark.parametrize("value", [631_151_999 * 1000, 7_258_118_401_000, 10**13, 10**16])
def test_epoch_milliseconds_outside_the_plausible_range_are_unparseable(value: int) -> None:
    # Between the units' ranges (e.g. 1e13 ms would be year 2286) nothing is guessed.
    assert parse_timestamp(value, UTC) is None


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-20 02:00:01",
        "2024-07-20 14:30:00",
        "2024-01-20T02:00:01.123456",
    ],
)
def test_naive_value_with_no_zone_is_interpreted_in_local_time(value: str) -> None:
    naive = datetime.fromisoformat(value)
    assert parse_timestamp(value, None) == naive.astimezone()
    assert parse_timestamp(value) == naive.astimezone()


def test_value_with_offset_ignores_local_zone() -> None:
    assert parse_timestamp("2024-01-19T19:00:01-07:00", None) == INSTANT


def test_dst_ambiguous_naive_value_in_named_zone_takes_first_occurrence() -> None:
    # 01:30 happens twice in New York on 2024-11-03; the earlier (EDT, UTC-4) is taken.
    assert parse_timestamp("2024-11-03 01:30:00", NEW_YORK) == datetime(
        2024, 11, 3, 5, 30, tzinfo=UTC
    )


def test_dst_nonexistent_naive_value_in_named_zone_does_not_raise() -> None:
    # 02:30 never happens in New York on 2024-03-10; the offset before the gap applies.
    assert parse_timestamp("2024-03-10 02:30:00", NEW_YORK) == datetime(
        2024, 3, 10, 7, 30, tzinfo=UTC
    )


@pytest.mark.parametrize("zone", [ZoneInfo("Asia/Tokyo"), None])
def test_naive_value_that_overflows_on_conversion_is_unparseable(zone: tzinfo | None) -> None:
    assert parse_timestamp("0001-01-01 00:00:00", zone) is None


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
)
def test_aware_value_that_overflows_on_conversion_is_unparseable_not_an_error(
    value: str,
) -> None:
    # parse_timestamp promises never to raise: a hostile stored value means "age unknown".
    assert parse_timestamp(value, UTC) is None


@pytest.mark.parametrize("value", ["²", "¹²³", "①"])
def test_unicode_digit_string_is_unparseable_not_an_error(value: str) -> None:
    # str.isdigit() is true for these, float() rejects them: must still not raise.
    assert parse_timestamp(value, UTC) is None


def test_format_utc_writes_seconds_with_explicit_utc_offset() -> None:
    assert format_utc(INSTANT.replace(microsecond=987654)) == "2024-01-20T02:00:01+00:00"


def test_format_utc_converts_other_offsets_to_utc() -> None:
    moment = datetime(2024, 1, 19, 19, 0, 1, tzinfo=timezone(timedelta(hours=-7)))
    assert format_utc(moment) == "2024-01-20T02:00:01+00:00"
    assert format_utc(datetime(2024, 1, 19, 19, 0, 1, tzinfo=PHOENIX)) == (
        "2024-01-20T02:00:01+00:00"
    )


def test_format_utc_output_parses_back_to_same_instant() -> None:
    assert parse_timestamp(format_utc(INSTANT), PHOENIX) == INSTANT


def test_utc_now_is_aware_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize("name", ["local", "LOCAL", "Local"])
def test_resolve_zone_local_is_none(name: str) -> None:
    assert resolve_zone(name) is None


@pytest.mark.parametrize("name", ["UTC", "utc", "Z", "z"])
def test_resolve_zone_utc_names_are_utc(name: str) -> None:
    assert resolve_zone(name) is UTC


@pytest.mark.parametrize("name", ["America/Phoenix", "Europe/Berlin", "Etc/GMT+7"])
def test_resolve_zone_named_zone_is_zoneinfo(name: str) -> None:
    assert resolve_zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "America/", "Europe/Berlin\x00"],
)
def test_resolve_zone_unknown_name_raises_value_error_naming_it(name: str) -> None:
    with pytest.raises(ValueError) as raised:
        resolve_zone(name)
    assert str(raised.value) == f"unknown time zone {name!r}"


@pytest.mark.parametrize("name", ["America", "Europe"])
def test_resolve_zone_directory_of_zones_raises_value_error(name: str) -> None:
    # A directory inside the tz database is not a zone; it must be the documented ValueError.
    with pytest.raises(ValueError) as raised:
        resolve_zone(name)
    assert str(raised.value) == f"unknown time zone {name!r}"
