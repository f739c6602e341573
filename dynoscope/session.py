"""The development session's admin token: admin routes in ``make run`` without setting one.

In development mode, ``dynoscope serve`` without ``ADMIN_TOKEN`` makes a token for the run,
writes it to ``admin-token`` beside the trace file (``./var/admin-token``, readable by its
owner only) and removes it at exit; it is never printed or logged. The other commands run in
development without ``ADMIN_TOKEN`` (``dynoscope fault``, ``dynoscope report --url``) use
that file's token when they go to this host, so they reach the served API with nothing to
copy:

    with session_token(os.environ) as path:    # serve: ADMIN_TOKEN set while it runs
        ...
    settings = Settings.from_env(adopt_session_token(os.environ))   # any other command

Outside development nothing is made or read: an admin surface there needs a token of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from urllib.parse import urlsplit

from instrumentation.settings import SettingsError, TelemetrySettings

TOKEN_FILE = "admin-token"  # noqa: S105 (a file name, not a secret)


def in_development(environ: Mapping[str, str]) -> bool:
    return environ.get("DYNOSCOPE_ENV", "").strip().lower() in ("", "development")


def token_path(environ: Mapping[str, str]) -> Path | None:
    """``admin-token`` beside the trace file (``DYNOSCOPE_TRACES_FILE``, ``./var/...``);
    ``None`` when the settings are unusable (the command's own settings say why)."""
    try:
        traces = TelemetrySettings.from_env(environ).traces_file
    except SettingsError:
        return None
    return Path(traces).parent / TOKEN_FILE


def _wanted(environ: Mapping[str, str]) -> Path | None:
    if not in_development(environ) or environ.get("ADMIN_TOKEN"):
        return None
    return token_path(environ)


@contextlib.contextmanager
def session_token(environ: MutableMapping[str, str]) -> Iterator[Path | None]:
    """For ``serve``: in development without ``ADMIN_TOKEN``, a new token in ``environ`` (so
    every worker has it) and in the token file while the block runs; the path, or ``None``
    when the environment gives the token or is not development.

    The file is locked while this run holds it: a second ``serve`` of the same folder (two
    ports) shares the first one's token instead of replacing it, and leaves the file to it.
    """
    path = _wanted(environ)
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # a file left by an earlier run keeps its mode otherwise
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another serve holds it: its token serves this one too
            environ["ADMIN_TOKEN"] = os.read(descriptor, 4096).decode().strip()
            try:
                yield path
            finally:
                environ.pop("ADMIN_TOKEN", None)
            return
        token = secrets.token_urlsafe(32)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, (token + "\n").encode())
        environ["ADMIN_TOKEN"] = token
        try:
            yield path
        finally:
            environ.pop("ADMIN_TOKEN", None)
            with contextlib.suppress(OSError):
                path.unlink()  # still locked by this run: nobody else wrote it
    finally:
        os.close(descriptor)


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def adopt_session_token(environ: Mapping[str, str], *, url: str | None = None) -> Mapping[str, str]:
    """For the other commands: ``environ`` with the running session's token, in development
    without ``ADMIN_TOKEN`` when the token file exists and the command goes to this host
    (``url`` on loopback, or none); ``environ`` as it is otherwise. The token is never sent
    elsewhere."""
    path = _wanted(environ)
    if path is None or (url is not None and urlsplit(url).hostname not in LOOPBACK):
        return environ
    try:
        token = path.read_text().strip()
    except (OSError, ValueError):
        return environ
    return {**environ, "ADMIN_TOKEN": token} if token else environ
