"""Receivers of alert notifications: console (always) and an Alertmanager-format webhook."""

from alerts.notifiers.console import ConsoleNotifier
from alerts.notifiers.notifier import Notifier
from alerts.notifiers.webhook import WebhookConfig, WebhookNotifier

__all__ = ["ConsoleNotifier", "Notifier", "WebhookConfig", "WebhookNotifier"]
