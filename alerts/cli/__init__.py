"""The engine's ``dynoscope`` subcommands: ``alerts``, ``rules`` (``commands``), ``silence``
(``silences``) and ``receivers`` (``receivers``)."""
