"""Scaling-health alert rules, evaluation and notification.

Where each concept lives (core pure, I/O at the edges):

- ``rule``, ``loader``: the rule-file format and loading (file, folder, overrides);
- ``signals``, ``window``: named signals with their PromQL and their in-process computation;
- ``state``: the pure alert state machine (rule, previous alerts, result, now) → outcome;
- ``sources``: Prometheus's HTTP API, or the process's own registries (embedded mode);
- ``evaluator``, ``scheduler``: one cycle of a rule group, and APScheduler running them;
- ``store``, ``outbox``, ``notifiers``: state and history in the database, delivery;
- ``export``: the rules as a Prometheus rule file; ``monitor``: everything wired from
  settings; ``app``, ``cli``: the API routes and ``dynoscope`` subcommands.
"""
