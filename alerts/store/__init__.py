"""The engine's own store: tables (``schema``), migrations (``migrate``, ``migrations``),
reads and writes (``store``), the write-behind journal (``writer``), who leads (``lease``)
and one engine per SQLite file (``lock``)."""
