"""One record per utterance, whatever the corpus."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

BONAFIDE = "bonafide"
SPOOF = "spoof"
Label = Literal["bonafide", "spoof"]


@dataclass(frozen=True)
class Trial:
    """An utterance to train on or score.

    utt_id: unique id within a protocol (score files are keyed by it).
    path: audio file.
    label: ``"bonafide"`` or ``"spoof"``.
    attack: attack / system id (``"-"`` or ``"bonafide"`` normalised to ``"-"`` for bona fide).
    speaker, subset: as the corpus gives them (``""`` when unknown).
    meta: any other protocol columns (codec, environment, vocoder, ...), for per-condition breakdowns.
    """

    utt_id: str
    path: Path
    label: Label
    attack: str = "-"
    speaker: str = ""
    subset: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def target(self) -> int:
        """Class index for training: 1 = bona fide, 0 = spoof."""
        return 1 if self.label == BONAFIDE else 0
