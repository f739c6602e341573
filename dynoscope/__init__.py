"""The ``dynoscope`` command: the composition root that wires the other packages.

Every package registers its own subcommands here (``cli.build_parser``); no package imports
this one.
"""
