"""The HTTP API's admin tokens: the token file's lines, the environment token, matching a
presented token to its name, and the bearer header."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eemt_cleanup.errors import ConfigError
from eemt_cleanup.http.auth import (
    Token,
    TokenSet,
    bearer_token,
    load_tokens,
    parse_token_file,
    read_token_file,
)

OPS = "ops-0123456789abcdef"
CI = "ci-fedcba9876543210"


def test_a_file_of_named_tokens_with_comments_and_blank_lines() -> None:
    text = f"# who may clean\n\nops:{OPS}\n  ci : {CI}  \n"
    tokens = parse_token_file(text, "tokens")
    assert [(t.name, t.secret) for t in tokens] == [("ops", OPS.encode()), ("ci", CI.encode())]


def test_a_file_of_one_bare_token_names_it_default() -> None:
    assert [t.name for t in parse_token_file(f"{OPS}\n", "tokens")] == ["default"]


def test_a_token_may_hold_a_colon_after_its_name() -> None:
    (token,) = parse_token_file(f"ops:{OPS}:more", "tokens")
    assert token.secret == f"{OPS}:more".encode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ops:short", "tokens, line 1: the token is 5 characters; use at least 16"),
        (f"ops:{OPS}\nci:{OPS}", "tokens, line 2: the same token as 'ops'"),
        (f"ops:{OPS}\nops:{CI}", "tokens, line 2: the name 'ops' is given twice"),
        (f":{OPS}", "tokens, line 1: a token's name is 1-64 letters"),
        (f"ops:{OPS} with spaces", "tokens, line 1: a token is visible ASCII characters only"),
        (f"ops:{OPS}é", "tokens, line 1: a token is visible ASCII characters only"),
        (f"{OPS}\n{CI}", "tokens: with several tokens, give each line as NAME:TOKEN"),
        ("\n# nothing\n", "tokens: no token in the file"),
    ],
)
def test_a_token_file_that_cannot_be_used_is_refused_naming_its_line(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_token_file(text, "tokens")
    assert str(raised.value).startswith(message)
    assert OPS not in str(raised.value) and CI not in str(raised.value)


def test_match_names_the_token_presented_and_nothing_else() -> None:
    tokens = TokenSet([Token("ops", OPS.encode()), Token("ci", CI.encode())])
    assert tokens.match(OPS) == "ops"
    assert tokens.match(CI) == "ci"
    assert tokens.match(OPS[:-1]) is None
    assert tokens.match(OPS + "x") is None
    assert tokens.match("") is None
    assert tokens.match("\udcff") is None  # not even encodable as UTF-8: no match, no error
    assert TokenSet().match(OPS) is None
    assert "0123" not in repr(tokens.tokens)


def test_load_tokens_takes_the_environment_token_named_env_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"ci:{CI}\n")
    tokens = load_tokens(path, {"EEMT_CLEANUP_API_TOKEN": f"  {OPS}\n"})
    assert tokens.names == ["env", "ci"]
    assert tokens.match(OPS) == "env"
    assert not load_tokens(None, {"EEMT_CLEANUP_API_TOKEN": "   "})
    with pytest.raises(ConfigError, match="the same token is given twice"):
        load_tokens(path, {"EEMT_CLEANUP_API_TOKEN": CI})


def test_a_token_file_through_a_symlink_is_read_but_not_a_directory_or_a_writable_one(
    tmp_path: Path,
) -> None:
    real = tmp_path / "..data-token"
    real.write_text(OPS)
    real.chmod(0o644)
    link = tmp_path / "token"
    link.symlink_to(real)  # as a Kubernetes secret volume mounts it
    assert [t.name for t in read_token_file(link)] == ["default"]
    with pytest.raises(ConfigError, match="not a regular file"):
        read_token_file(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_token_file(fifo)  # refused at once, not waited on
    big = tmp_path / "big"
    big.write_text(f"ops:{OPS}\n" + "#" * 70_000)
    with pytest.raises(ConfigError, match="larger than 64 KiB"):
        read_token_file(big)
    real.chmod(0o646)
    with pytest.raises(ConfigError, match=r"anyone may write it \(mode 0646\)"):
        read_token_file(link)
    with pytest.raises(ConfigError, match="cannot read it"):
        read_token_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {OPS}", OPS),
        (f"bearer   {OPS} ", OPS),
        (f"Basic {OPS}", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_reads_only_the_bearer_scheme(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
