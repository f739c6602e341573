"""Reusable FastAPI / SQLAlchemy / Redis instrumentation."""
