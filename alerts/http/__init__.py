"""The engine's HTTP edge: the ``/alerts`` admin routes and the in-process engine (``app``),
and the routes that quiet alerts (``silences``)."""
