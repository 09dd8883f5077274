"""Reports that read runs, not methods.

A report reads finished runs (their scores, ``meta.json`` and weights) and writes tables and figures; it never
changes how a model trains. A recipe runner here may train the runs a report needs when they are missing, always
through the ordinary trainer with the run's own config, so a report's run is any other run.

Modules:

* ``expert_usage``: MoLEx expert usage per attack and per layer (``plastispoof experts``).
"""
