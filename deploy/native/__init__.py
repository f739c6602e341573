"""The production topology run natively on loopback (``make stack``): see ``stack.py``."""
