"""The ``plastispoof synth`` verb as one call: the embedded corpus (with its adaptation split), or a copy-synthesis
corpus from real recordings or a recipe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from plastispoof.data.adaptation import write_adaptation_split
from plastispoof.data.copysynth import build_copysynth_corpus
from plastispoof.data.synthetic import write_corpus
from plastispoof.errors import InputError


def synth(out: Path, *, profile: str = "tiny", seed: int = 42, bonafide: Path | None = None,
          recipe: str | None = None, attacks: list[str] | None = None, tts: list[str] | None = None,
          transcripts: Path | None = None, language: str = "en", max_utterances: int | None = None,
          split: str = "text", adaptation: float | None = None, force: bool = False,
          note: Callable[[str], None] = lambda text: None) -> str:
    """Write the corpus and return what was written, for a person; ``note`` hears what was skipped."""
    if bonafide is not None or recipe is not None:
        if adaptation is not None:
            raise InputError("--adaptation splits the embedded corpus; a copy-synthesis corpus has its "
                             "leave-one-family-out roots instead (lofo/ in corpus.json)")
        root = build_copysynth_corpus(out, bonafide=bonafide, recipe=recipe, attacks=attacks, tts=tts,
                                      transcripts=transcripts, language=language, max_utterances=max_utterances,
                                      seed=seed, split=split, note=note)
        return f"wrote copy-synthesis corpus to {root} (manifest: {root / 'corpus.json'})"
    if adaptation is not None and not 0 < adaptation < 1:  # before minutes of writing audio
        raise InputError(f"--adaptation must be between 0 and 1, got {adaptation}")
    root = write_corpus(out, profile=profile, seed=seed, force=force)
    lines = [f"wrote {profile} corpus to {root}"]
    if adaptation is not None:
        split_root = write_adaptation_split(root, adaptation, seed)
        lines.append(f"wrote the adaptation split to {split_root} (split.json; forgetting: "
                     f"{split_root / 'old-attacks'})")
    return "\n".join(lines)
