"""Integrations that alert notifications go out through: the console (always), a webhook in
Alertmanager's format (``webhook``), Slack (``slack``), PagerDuty Events v2 (``pagerduty``)
and Alertmanager itself (``alertmanager``); ``notifier`` is the protocol they implement."""

from alerts.delivery.notifiers.console import ConsoleNotifier
from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.notifiers.webhook import WebhookConfig, WebhookNotifier

__all__ = ["ConsoleNotifier", "Notifier", "WebhookConfig", "WebhookNotifier"]
