"""Receivers of alert notifications: console (always) and an Alertmanager-format webhook."""

from alerts.delivery.notifiers.console import ConsoleNotifier
from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.notifiers.webhook import WebhookConfig, WebhookNotifier

__all__ = ["ConsoleNotifier", "Notifier", "WebhookConfig", "WebhookNotifier"]
