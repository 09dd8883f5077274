"""A spoof corpus made from real recordings: copy-synthesis through vocoder families and TTS engines, one shared
channel, ASVspoof 2019 LA protocols with leave-one-family-out variants (``plastispoof synth --bonafide DIR`` or
``--recipe open-speech``).

- ``vocoders.py``: the copy-synthesis families (WORLD, Griffin-Lim, LPC, sinusoidal / phase vocoder, codecs);
- ``tts.py``: the TTS engines (eSpeak NG, Festival, Flite) and built-in sentences;
- ``channel.py``: the channel every utterance passes through;
- ``corpus.py``: sources, splits, protocols, leave-one-family-out folders, the manifest;
- ``recipes.py``: bona fide sources a user need not download (Debian's Asterisk prompts).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from plastispoof.data.copysynth.corpus import (
    MANIFEST_NAME,
    Source,
    find_sources,
    lofo_root,
    read_manifest,
    write_copysynth_corpus,
)
from plastispoof.data.copysynth.recipes import PARTIAL_TTS, RECIPE_TTS, RECIPES, recipe_sources
from plastispoof.errors import InputError

__all__ = ["MANIFEST_NAME", "RECIPES", "Source", "build_copysynth_corpus", "lofo_root", "read_manifest"]


def build_copysynth_corpus(out: str | os.PathLike, *, bonafide: str | os.PathLike | None = None,
                           recipe: str | None = None, attacks: list[str] | None = None,
                           tts: list[str] | None = None, transcripts: str | os.PathLike | None = None,
                           language: str = "en", max_utterances: int | None = None, seed: int = 42,
                           split: str = "text", voices: list[str] | None = None,
                           sound_roots: list[str | os.PathLike] | None = None,
                           note: Callable[[str], None] = lambda text: None) -> Path:
    """Write a copy-synthesis corpus under ``out`` from the recordings in ``bonafide`` (speaker = first
    sub-folder; ``transcripts``: CSV path,text; ``language``: what they speak) or from ``recipe``.

    ``attacks``: copy-synthesis families or attack IDs (None = all this machine can run); ``tts``: engine names
    (None = none for a folder, the recipe's engines for a recipe). ``max_utterances`` caps bona fide recordings
    per speaker. Returns ``out``; its ``corpus.json`` describes what was written.
    """
    if (bonafide is None) == (recipe is None):
        raise InputError("give exactly one of --bonafide DIR and --recipe NAME")
    if recipe is not None:
        if transcripts is not None:
            raise InputError(f"--transcripts applies to --bonafide; the {recipe} recipe brings its own")
        sources = recipe_sources(recipe, voices, sound_roots)
        tts = RECIPE_TTS[recipe] if tts is None else tts
        origin = f"recipe {recipe}"
    elif voices or sound_roots:
        raise InputError("voices and sound roots choose a recipe's Asterisk voices; a --bonafide folder has its own")
    else:
        sources = find_sources(bonafide, language, transcripts, note)
        origin = f"bonafide {Path(bonafide).resolve()}"
    return write_copysynth_corpus(out, sources, attacks=attacks, tts=tts or [], max_utterances=max_utterances,
                                  seed=seed, split=split, origin=origin, partial_tts=recipe in PARTIAL_TTS)
