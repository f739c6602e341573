"""Settings that switch fault injection on (``/admin/faults``) with a known admin token."""

from __future__ import annotations

TOKEN = "fault-admin-token-" + "z" * 16
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def faults_on(environ: dict[str, str], **extra: str) -> dict[str, str]:
    """``environ`` with faults enabled behind ``TOKEN``; ``extra`` overrides."""
    return {**environ, "ADMIN_TOKEN": TOKEN, "DYNOSCOPE_FAULTS_ENABLED": "true", **extra}
