"""Quieting alerts: silences (``silence``), label matchers (``matchers``), recurring
maintenance windows (``recurrence``), and silences in the alert store (``store``)."""
