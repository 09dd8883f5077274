"""Reports that read runs, not methods.

A report reads finished runs (their score files, ``meta.json`` and weights) and writes tables and figures; it
never changes how a model trains. The recipe runners here train the runs a report needs when they are missing
(finished ones are skipped), always through the ordinary trainer with an ordinary config, so a report's run is
like any other run. A training method lives in ``capacity/``; what it looks like afterwards lives here.

Modules:

* ``recipes``: resolve a recipe cell (dataset x model x strategy x seed) into a config; train and evaluate it.
* ``table1``: Table I (``plastispoof reproduce table1``) and the demo (``plastispoof demo``).
* ``layer_sweep``: drop-in at each layer in turn, EER per layer (the paper's Fig. 5; ``reproduce layers``).
* ``tradeoff``: EER against FLOPs and parameters of dynamic widths, with the Pareto front (``reproduce tradeoff``).
* ``unseen``: the held-out attack-family benchmark (``reproduce unseen``).
* ``gradcam``: Grad-CAM per ResNet stage for one audio file (``plastispoof gradcam``).
* ``expert_usage``: MoLEx expert usage per attack and per layer (``plastispoof experts``).
* ``tables``: what the tables share: mean ± std over seeds, cells as Markdown and CSV.
"""
