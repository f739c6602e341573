"""Delivery of notifications: the queued value (``notification``), routing and receivers
(``routing``, ``receivers``), aggregation groups (``grouping``), the at-least-once outbox
(``outbox``), reminders and refreshes (``resend``), links (``links``), and the integrations
(``notifiers``)."""
