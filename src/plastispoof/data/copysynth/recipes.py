"""Recipes: bona fide sources a user need not download.

``open-speech``: the Asterisk PBX core prompts Debian packages in French, Spanish, Italian and Russian
(``asterisk-core-sounds-{fr,es,it,ru}-wav``, CC BY-SA). Each language is read by one professional voice
(fr_CA June, es_MX Allison, it_IT Carlo, ru_RU IvrvoiceRU), recorded as 8 kHz 16-bit mono WAV; the
``asterisk-core-sounds-<lang>`` package beside each ships the transcripts (``name: text`` lines), so the TTS
engines speak the same sentences. Kept: prompts with a transcript of two words or more lasting 1-8 s.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import soundfile as sf

from plastispoof.data.copysynth.corpus import Source
from plastispoof.errors import InputError

SOUNDS = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")
OPEN_SPEECH_LANGUAGES = ("fr", "es", "it", "ru")
MIN_SECONDS, MAX_SECONDS, MIN_WORDS = 1.0, 8.0, 2
RECIPES = {"open-speech": "Asterisk core prompts (Debian asterisk-core-sounds-{fr,es,it,ru}-wav), one voice per "
                          "language"}
RECIPE_TTS = {"open-speech": ["espeak-ng"]}  # the Festival and Flite voices Debian ships speak English only


def _packages(language: str) -> tuple[str, str]:
    return f"asterisk-core-sounds-{language}-wav", f"asterisk-core-sounds-{language}"


def _prompt_folder(language: str, sounds: Path) -> Path | None:
    """The folder holding ``language``'s prompts: ``sounds/<lang>`` (an alternatives link) or the one voice folder
    ``sounds/<lang>_<REGION>_<sex>_<name>``."""
    link = sounds / language
    if link.is_dir():
        return link.resolve()
    voices = sorted(p for p in sounds.glob(f"{language}_*_*_*") if p.is_dir())
    return voices[0] if voices else None


def _transcript_file(language: str, docs: Path) -> Path | None:
    folder = docs / f"asterisk-core-sounds-{language}"
    return next((p for p in (folder / f"core-sounds-{language}.txt.gz", folder / f"core-sounds-{language}.txt")
                 if p.is_file()), None)


def read_asterisk_transcripts(path: Path) -> dict[str, str]:
    """{prompt name (path without .wav, relative to the voice folder): text} from a core-sounds-<lang>.txt."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig") as handle:  # the Italian file starts with a byte-order mark
        lines = handle.read().splitlines()
    texts = {}
    for line in lines:
        if line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        if text.strip():
            texts[name.strip()] = text.strip()
    return texts


def open_speech_sources(sounds: Path = SOUNDS, docs: Path = DOCS,
                        languages: tuple[str, ...] = OPEN_SPEECH_LANGUAGES) -> list[Source]:
    """The bona fide sources of the ``open-speech`` recipe; :class:`InputError` with the ``apt-get install``
    line when a package is missing."""
    missing, sources = [], []
    for language in languages:
        folder, transcripts = _prompt_folder(language, sounds), _transcript_file(language, docs)
        if folder is None or transcripts is None:
            missing.extend(_packages(language))
            continue
        speaker = folder.name
        for name, text in sorted(read_asterisk_transcripts(transcripts).items()):
            path = folder / f"{name}.wav"
            if not path.is_file() or len(text.split()) < MIN_WORDS:
                continue
            info = sf.info(str(path))
            if MIN_SECONDS <= info.duration <= MAX_SECONDS:
                sources.append(Source(path, speaker, language, text))
    if missing:
        raise InputError("the open-speech recipe needs Debian's Asterisk prompts; install them with: "
                         f"apt-get install {' '.join(missing)}")
    return sources


def recipe_sources(name: str) -> list[Source]:
    """The bona fide sources of recipe ``name``."""
    if name not in RECIPES:
        raise InputError(f"unknown --recipe {name!r}; known: {', '.join(RECIPES)}")
    return open_speech_sources()
