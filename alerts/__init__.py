"""Scaling-health alert rules, evaluation and notification, in rooms by responsibility.

- ``rules``: the rule-file format, loading, the catalogue of signals (PromQL and their
  in-process computation), annotation templates, export as a Prometheus rule file;
- ``engine``: the pure state machine, the in-memory ledger, one evaluation cycle, the
  scheduler, the metric sources, context lookup, leader election, and ``monitor`` (the
  engine wired from settings);
- ``delivery``: routing, grouping, the outbox, reminders, links, receivers and notifiers;
- ``store``: the engine's own database (schema, migrations, the store, the write-behind
  writer, the lease, the file lock); alert state lives in memory and is written behind;
- ``silences``: silences, matchers and maintenance windows;
- ``http``, ``cli``: the edges (admin routes, ``dynoscope`` subcommands);
- ``settings``, ``errors``: the engine's settings and its exception hierarchy;
  ``report``, ``scorecard``: the scaling-health report read from Prometheus.

The pure core (``rules``, ``engine.state``, ``engine.ledger``, ``silences.matchers`` …) imports
no I/O library; ``tests/test_layering.py`` holds that.
"""
