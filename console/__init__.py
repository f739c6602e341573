"""The operations console: dynoscope's pages in a browser, at ``/console``.

Overview (the scorecard and the last hour's charts), alerts (value against threshold, links,
example traces and slowest statements; acknowledge; silence this), silences and maintenance
windows, the history of transitions and deliveries, traces as waterfalls, and receivers
with a test alert. Served by the API wherever ``ADMIN_TOKEN`` is set, signed in with it.

    mount_console(app, admin_token=token, alerts=settings.alerts, traces_file=path)

It reads the alert engine (``alerts``), the report (``ops``) and the trace files
(``exporters``, ``instrumentation``); it never imports the service (``api``).
"""

from console.app import PREFIX as CONSOLE_PREFIX
from console.app import mount_console

__all__ = ["CONSOLE_PREFIX", "mount_console"]
