"""Grafana dashboards as code.

``catalogue`` lists the dashboards and renders them to ``dashboards/json``; ``scaling`` and
``engine`` define them on grafana-foundation-sdk, from the alert signals' PromQL
(``panels``, ``promql``); ``push`` uploads them through grafana-client; ``cli`` adds
``dynoscope dashboards build|push``.
"""
