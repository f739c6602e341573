"""What the service's schema and the alert store's schema share: a UTC timestamp column type
(``types``) and the way their Alembic migrations run on an async engine (``migrations``).

It imports nothing of this project, so both ``api`` and ``alerts`` may use it.
"""
