"""The alert engine: the pure state machine (``state``), alert state in memory (``ledger``),
one evaluation cycle (``evaluator``), the clock (``scheduler``), what rules ask and get
(``query``, ``window``, ``sources``), context for on-call (``context``), leader election
(``election``), everything wired from settings (``monitor``), and the engine in a process of
its own (``standalone``, ``dynoscope alerts run``)."""
