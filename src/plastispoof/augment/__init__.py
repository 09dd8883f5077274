"""Training augmentation (``data.augment``) and the degradations of ``plastispoof stress``.

Each method in its own file: ``rawboost.py`` (RawBoost's three algorithms), ``codecs.py`` (PyAV codec round
trips and encoder detection), ``noise.py`` (additive noise at an SNR), ``reverb.py`` (RIRs and RT60),
``config.py`` (validated options per augmentation) and ``pipeline.py`` (the seeded chain applied to a crop).
The package imports nothing heavy itself, so reading a config stays cheap.
"""
