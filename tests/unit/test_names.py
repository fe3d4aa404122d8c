"""Unit tests of eemt_cleanup.fs.names.component: one safe path component, or a refusal."""

from __future__ import annotations

import pytest

from eemt_cleanup.fs.names import NAME_MAX, NameRefused, component

UUID = "3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b"


def test_name_max_is_the_posix_file_name_limit() -> None:
    assert NAME_MAX == 255


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UUID, UUID),
        ("abc", "abc"),
        (f"{UUID}_dem.tif", f"{UUID}_dem.tif"),
        (42, "42"),
        (0, "0"),
        (-7, "-7"),
        ("Ünïcödé_dem.tif", "Ünïcödé_dem.tif"),
        ("日本語の標高.tif", "日本語の標高.tif"),
        ("...", "..."),
        (".hidden", ".hidden"),
        ("a..b", "a..b"),
        ("with space.tif", "with space.tif"),
        (" leading", " leading"),
        ("back\\slash", "back\\slash"),
        ("a" * 255, "a" * 255),
        ("é" * 127 + "a", "é" * 127 + "a"),  # 255 bytes in UTF-8
        ("日" * 85, "日" * 85),  # 255 bytes in UTF-8
    ],
)
def test_component_accepts_single_safe_name(value: object, expected: str) -> None:
    assert component(value, "job id") == expected


def test_component_appends_suffix() -> None:
    assert component(UUID, "job id", suffix="_results.zip") == f"{UUID}_results.zip"


def test_component_with_suffix_of_exactly_255_bytes_is_accepted() -> None:
    stem = "x" * (255 - len("_results.zip"))
    assert component(stem, "job id", suffix="_results.zip") == stem + "_results.zip"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "job id is NULL"),
        (True, "job id has an unexpected type (bool)"),
        (False, "job id has an unexpected type (bool)"),
        (1.5, "job id has an unexpected type (float)"),
        (float("nan"), "job id has an unexpected type (float)"),
        ([UUID], "job id has an unexpected type (list)"),
        (bytearray(b"abc"), "job id has an unexpected type (bytearray)"),
        ("", "job id is empty"),
        (b"", "job id b'' is stored as a BLOB, not text"),
        (b"abc", "job id b'abc' is stored as a BLOB, not text"),
        (UUID.encode(), f"job id {UUID.encode()!r} is stored as a BLOB, not text"),
        (" ", "job id ' ' is only white space"),
        ("\t\n", "job id '\\t\\n' is only white space"),
        (".", "job id '.' names a directory itself"),
        ("..", "job id '..' names a directory itself"),
        (b"..", "job id b'..' is stored as a BLOB, not text"),
        ("a\0b", "job id 'a\\x00b' contains a NUL byte"),
        ("\0", "job id '\\x00' contains a NUL byte"),
        ("a/b", "job id 'a/b' contains '/'"),
        ("../etc", "job id '../etc' contains '/'"),
        ("abc/", "job id 'abc/' contains '/'"),
        (b"a/b", "job id b'a/b' is stored as a BLOB, not text"),
        ("/", "job id '/' is an absolute path"),
        ("/etc", "job id '/etc' is an absolute path"),
        ("/etc/passwd", "job id '/etc/passwd' is an absolute path"),
        ("//etc", "job id '//etc' is an absolute path"),
        (b"\xff\xfe", "job id b'\\xff\\xfe' is stored as a BLOB, not text"),
        (b"dem\xe9.tif", "job id b'dem\\xe9.tif' is stored as a BLOB, not text"),
        ("dem\udce9.tif", "job id 'dem\\udce9.tif' is not valid UTF-8"),  # surrogateescape
        ("\udcff", "job id '\\udcff' is not valid UTF-8"),
        ("\ud800x", "job id '\\ud800x' is not valid UTF-8"),  # lone surrogate
        ("a" * 256, "job id is 256 bytes long (a file name has at most 255)"),
        ("é" * 128, "job id is 256 bytes long (a file name has at most 255)"),
        ("a" * 4096, "job id is 4096 bytes long (a file name has at most 255)"),
    ],
)
def test_component_refuses_unsafe_value_naming_it(value: object, message: str) -> None:
    with pytest.raises(NameRefused) as raised:
        component(value, "job id")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("../../etc/passwd", "upload name '../../etc/passwd' contains '/'"),
        ("/etc/passwd", "upload name '/etc/passwd' is an absolute path"),
        (None, "upload name is NULL"),
        ("..", "upload name '..' names a directory itself"),
    ],
)
def test_component_refusal_names_what_was_refused(value: object, message: str) -> None:
    with pytest.raises(NameRefused) as raised:
        component(value, "upload name")
    assert str(raised.value) == message


def test_component_with_suffix_over_255_bytes_is_refused() -> None:
    stem = "x" * (256 - len("_results.zip"))
    with pytest.raises(NameRefused) as raised:
        component(stem, "job id", suffix="_results.zip")
    assert "256 bytes long (a file name has at most 255)" in str(raised.value)


def test_component_checks_value_before_suffix_is_added() -> None:
    # A suffix cannot turn a refused value ("..") into an accepted one ("..._results.zip").
    with pytest.raises(NameRefused) as raised:
        component("..", "job id", suffix="_results.zip")
    assert str(raised.value) == "job id '..' names a directory itself"


def test_name_refused_is_a_value_error() -> None:
    assert issubclass(NameRefused, ValueError)
