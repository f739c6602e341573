"""Tools for ops, outside the watched service and the alert engine: the load generator
(``load``, ``load_user``, ``load_stats``), the scaling-health report read from Prometheus
(``report``) and its scorecard and capacity arithmetic (``scorecard``), and their
``dynoscope load`` and ``dynoscope report`` subcommands (``cli``)."""
