"""The HTTP API's admin tokens: where they come from, how a presented one is checked.

Tokens come from ``$EEMT_CLEANUP_API_TOKEN`` (named ``env``) and from a token file, never
from the config file (which is often world-readable and kept in version control). A token
file holds one token per line, ``NAME:TOKEN`` (several, each with its own name), or a single
bare token (named ``default``); blank lines and ``#`` comments are skipped. The name is what
the run log and the audit record as the ``user`` of an API-triggered run.

A presented token is compared with every configured one in constant time
(:func:`hmac.compare_digest`), all of them every time, so neither the time taken nor the
order of the tokens tells which token, or how much of one, was right.

Pure Python, no FastAPI: the command line checks tokens before it imports the server.
"""

from __future__ import annotations

import hmac
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from eemt_cleanup.errors import ConfigError

ENV_TOKEN = "EEMT_CLEANUP_API_TOKEN"  # noqa: S105 - the variable's name, not a token
ENV_TOKEN_NAME = "env"  # noqa: S105 - a name, not a token
BARE_TOKEN_NAME = "default"  # noqa: S105 - a name, not a token
# Shorter tokens can be guessed over a network; `openssl rand -hex 32` makes a good one.
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
MAX_TOKEN_FILE_BYTES = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# What an HTTP header can carry as a bearer token without escaping: visible ASCII.
_SECRET = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Token:
    name: str
    secret: bytes

    def __repr__(self) -> str:  # never the secret, in a traceback or a log line
        return f"Token(name={self.name!r})"


class TokenSet:
    """The configured tokens; ``match`` says whose a presented token is."""

    def __init__(self, tokens: Iterable[Token] = ()) -> None:
        self.tokens = tuple(tokens)
        names = [token.name for token in self.tokens]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"admin tokens: the name {duplicates[0]!r} is given twice")
        secrets = [token.secret for token in self.tokens]
        if len(set(secrets)) != len(secrets):
            raise ConfigError("admin tokens: the same token is given twice, under two names")

    def __bool__(self) -> bool:
        return bool(self.tokens)

    @property
    def names(self) -> list[str]:
        return [token.name for token in self.tokens]

    def match(self, presented: str) -> str | None:
        """The name of the token ``presented`` is, or None. Every token is compared, in
        constant time, whatever matched before."""
        given = presented.encode("utf-8", "surrogateescape")
        found = None
        for token in self.tokens:
            if hmac.compare_digest(given, token.secret) and found is None:
                found = token.name
        return found


def check_secret(secret: str, where: str) -> bytes:
    """``secret`` as bytes; raises ConfigError naming ``where`` when it is too short, too
    long, or holds anything but visible ASCII (a header could not carry it)."""
    if not _SECRET.fullmatch(secret):
        raise ConfigError(f"{where}: a token is visible ASCII characters only (no spaces)")
    if len(secret) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{where}: the token is {len(secret)} characters; use at least {MIN_TOKEN_LENGTH} "
            "(e.g. the output of 'openssl rand -hex 32')"
        )
    if len(secret) > MAX_TOKEN_LENGTH:
        raise ConfigError(f"{where}: the token is longer than {MAX_TOKEN_LENGTH} characters")
    return secret.encode("ascii")


def parse_token_file(text: str, where: str) -> list[Token]:
    """The tokens of a token file's ``text`` (``where`` names it in errors)."""
    lines = [
        (number, raw.strip())
        for number, raw in enumerate(text.splitlines(), start=1)
        if raw.strip() and not raw.strip().startswith("#")
    ]
    if not lines:
        raise ConfigError(f"{where}: no token in the file")
    if len(lines) > 1 and any(":" not in line for _, line in lines):
        raise ConfigError(
            f"{where}: with several tokens, give each line as NAME:TOKEN (a bare token is "
            "only for a file of one)"
        )
    tokens: list[Token] = []
    for number, line in lines:
        place = f"{where}, line {number}"
        name, secret = BARE_TOKEN_NAME, line
        if ":" in line:
            name, secret = (part.strip() for part in line.split(":", 1))
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{place}: a token's name is 1-64 letters, digits, '.', '_' or '-' (NAME:TOKEN)"
                )
        token = Token(name, check_secret(secret, place))
        for earlier in tokens:
            if earlier.name == token.name:
                raise ConfigError(f"{place}: the name {name!r} is given twice")
            if earlier.secret == token.secret:
                raise ConfigError(f"{place}: the same token as {earlier.name!r}")
        tokens.append(token)
    return tokens


def read_token_file(path: str | Path) -> list[Token]:
    """The tokens of the file at ``path``. Raises ConfigError naming it when it cannot be
    read, is not a regular file, is larger than 64 KiB, may be written by anyone (anyone
    could then add a token of their own), or holds no valid token."""
    where = f"--token-file {path}"
    try:
        # Followed when a symlink (a Kubernetes secret volume is made of them); opened
        # without blocking, so a FIFO planted there is refused, not waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if info.st_mode & stat.S_IWOTH:
            raise ConfigError(
                f"{where}: anyone may write it (mode {stat.S_IMODE(info.st_mode):04o}); "
                "chmod o-w it"
            )
        data = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{where}: cannot read it: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_TOKEN_FILE_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    return parse_token_file(text, where)


def load_tokens(
    token_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> TokenSet:
    """The tokens of ``$EEMT_CLEANUP_API_TOKEN`` (an empty value counts as unset) and of
    ``token_file``. Raises ConfigError for a token or a file that cannot be used."""
    env = os.environ if environ is None else environ
    tokens: list[Token] = []
    secret = env.get(ENV_TOKEN, "").strip()
    if secret:
        tokens.append(Token(ENV_TOKEN_NAME, check_secret(secret, ENV_TOKEN)))
    if token_file is not None:
        tokens.extend(read_token_file(token_file))
    return TokenSet(tokens)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None (no header, or
    another scheme)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


__all__ = [
    "ENV_TOKEN",
    "ENV_TOKEN_NAME",
    "MIN_TOKEN_LENGTH",
    "Token",
    "TokenSet",
    "bearer_token",
    "load_tokens",
    "parse_token_file",
    "read_token_file",
]
