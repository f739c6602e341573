"""The served API the load generator and the report are pointed at, as the API's tests use it."""

from tests.api.conftest import api

__all__ = ["api"]
