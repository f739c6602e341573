"""Delivery of notifications: the queued value (``notification``), routing and receivers
(``routing``, ``receivers``), the stages every notification and every attempt passes
(``stages``: route, silence, render; fence, retry, count) composed in one place
(``pipeline``), aggregation groups (``grouping``), the at-least-once outbox that holds the
queues and groups between the stages (``outbox``), reminders and refreshes (``resend``),
links (``links``), and the integrations (``notifiers``: the ``Notifier`` protocol and the
console, webhook, Slack, PagerDuty and Alertmanager notifiers)."""
