"""Corpora: the :class:`Trial` record, protocol readers, the embedded synthetic corpus, torch datasets."""

from plastispoof.data.trials import BONAFIDE, SPOOF, Trial

__all__ = ["BONAFIDE", "SPOOF", "Trial"]
