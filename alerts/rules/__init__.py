"""Alert rules: the file format (``rule``), loading (``loader``), the catalogue of signals
(``signals``), durations (``duration``), annotation templates (``template``), and export as
a Prometheus rule file (``export``). ``default.yml`` holds the shipped rules."""
