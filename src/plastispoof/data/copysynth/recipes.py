"""Recipes: bona fide sources a user need not download.

``open-speech``: the Asterisk PBX core prompts Debian packages in French, Spanish, Italian and Russian
(``asterisk-core-sounds-{fr,es,it,ru}-wav``, CC BY-SA). Each language is read by one professional voice
(fr_CA June, es_MX Allison, it_IT Carlo, ru_RU IvrvoiceRU), recorded as 8 kHz 16-bit mono WAV; the
``asterisk-core-sounds-<lang>`` package beside each ships the transcripts (``name: text`` lines), so the TTS
engines speak the same sentences. Kept: prompts with a transcript of two words or more lasting 1-8 s.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from plastispoof.data.copysynth.corpus import Source
from plastispoof.errors import InputError

SOUNDS = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")
OPEN_SPEECH_LANGUAGES = ("fr", "es", "it", "ru")
MIN_SECONDS, MAX_SECONDS, MIN_WORDS = 1.0, 8.0, 2
RECIPES = {
    "open-speech": "Asterisk core prompts (Debian asterisk-core-sounds-{fr,es,it,ru}-wav), one voice per language",
    "asterisk-world": "every non-English Asterisk voice: the four core voices, it_IT_f_Menardi, and es_CO / "
                      "fr_FR_f_Armelle where extracted (the default detector's training material)",
    "asterisk-en": "the English Asterisk core prompts (en_US_f_Allison): the default detector's held-out test",
}
RECIPE_TTS = {"open-speech": ["espeak-ng"],  # one engine that speaks all four languages
              "asterisk-world": ["espeak-ng", "festival"],  # Festival where a voice exists (Italian, Russian)
              "asterisk-en": ["espeak-ng", "festival", "flite"]}
PARTIAL_TTS = {"asterisk-world"}  # recipes whose TTS engines skip the languages they have no voice for


@dataclass(frozen=True)
class AsteriskVoice:
    """One Asterisk prompt set: its speaker name, language, Debian package, folder under a sounds root."""

    name: str
    language: str
    package: str
    folder: str
    suffix: str  # .wav (8 kHz PCM) or .gsm (raw GSM 6.10, which libsndfile reads)
    licence: str


ASTERISK_VOICES: dict[str, AsteriskVoice] = {v.name: v for v in (
    AsteriskVoice("fr_CA_f_June", "fr", "asterisk-core-sounds-fr-wav", "fr_CA_f_June", ".wav", "CC-BY-SA-3.0"),
    AsteriskVoice("es_MX_f_Allison", "es", "asterisk-core-sounds-es-wav", "es_MX_f_Allison", ".wav", "CC-BY-SA-3.0"),
    AsteriskVoice("it_IT_m_Carlo", "it", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo", ".wav", "CC-BY-SA-3.0"),
    AsteriskVoice("ru_RU_f_IvrvoiceRU", "ru", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU", ".wav",
                  "CC-BY-SA-3.0"),
    AsteriskVoice("it_IT_f_Menardi", "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", ".wav", "GPL-2"),
    # These two conflict with asterisk-core-sounds-{es,fr} in Debian (both provide asterisk-prompt-{es,fr}): they
    # are read from an extracted package (apt-get download NAME; dpkg-deb -x NAME_*.deb data/debian/NAME).
    AsteriskVoice("es_CO_f_July", "es", "asterisk-prompt-es-co", "es", ".gsm", "GPL-2"),
    AsteriskVoice("fr_FR_f_Armelle", "fr", "asterisk-prompt-fr-armelle", "fr", ".gsm", "BSD-style (Gutierrez 2006)"),
    AsteriskVoice("en_US_f_Allison", "en", "asterisk-core-sounds-en-wav", "en_US_f_Allison", ".wav", "CC-BY-SA-3.0"),
)}
RECIPE_VOICES = {"asterisk-world": ("fr_CA_f_June", "es_MX_f_Allison", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU",
                                    "it_IT_f_Menardi"),
                 "asterisk-en": ("en_US_f_Allison",)}


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


def _voice_folder(voice: AsteriskVoice, roots: list[Path]) -> Path | None:
    """The first ``root/folder`` holding ``voice``'s prompts (files with its suffix)."""
    for root in roots:
        folder = root / voice.folder
        if folder.is_dir() and next(folder.glob(f"*{voice.suffix}"), None) is not None:
            return folder.resolve()
    return None


def asterisk_voice_sources(voices: list[str] | tuple[str, ...], roots: list[str | os.PathLike] | None = None,
                           docs: Path = DOCS) -> list[Source]:
    """Bona fide sources of the named Asterisk voices, searched under ``roots`` (default: Debian's sounds folder).

    Texts come from the core transcripts of the voice's language by prompt name (the other prompt sets record the
    same prompts); kept: prompts with a transcript of two words or more lasting 1-8 s. :class:`InputError` with
    the command that installs or extracts what is missing."""
    unknown = [v for v in voices if v not in ASTERISK_VOICES]
    if unknown:
        raise InputError(f"unknown Asterisk voice(s) {', '.join(unknown)}; known: {', '.join(ASTERISK_VOICES)}")
    search = [Path(r) for r in (roots or [SOUNDS])]
    sources, missing = [], []
    for name in voices:
        voice = ASTERISK_VOICES[name]
        folder, transcripts = _voice_folder(voice, search), _transcript_file(voice.language, docs)
        if folder is None:
            missing.append(f"{name} (apt-get install {voice.package}, or apt-get download {voice.package} and "
                           f"dpkg-deb -x it into a folder whose usr/share/asterisk/sounds is listed in the roots)")
            continue
        if transcripts is None:
            missing.append(f"{name}'s transcripts (apt-get install asterisk-core-sounds-{voice.language})")
            continue
        for prompt, text in sorted(read_asterisk_transcripts(transcripts).items()):
            path = folder / f"{prompt}{voice.suffix}"
            if not path.is_file() or len(text.split()) < MIN_WORDS:
                continue
            if MIN_SECONDS <= sf.info(str(path)).duration <= MAX_SECONDS:
                sources.append(Source(path, name, voice.language, text))
    if missing:
        raise InputError(f"missing Asterisk prompts (searched {', '.join(map(str, search))}): {'; '.join(missing)}")
    return sources


def recipe_sources(name: str, voices: list[str] | None = None,
                   roots: list[str | os.PathLike] | None = None) -> list[Source]:
    """The bona fide sources of recipe ``name`` (``voices`` / ``roots``: another voice list or sounds folders for
    the Asterisk voice recipes)."""
    if name not in RECIPES:
        raise InputError(f"unknown --recipe {name!r}; known: {', '.join(RECIPES)}")
    if name == "open-speech":
        return open_speech_sources()
    return asterisk_voice_sources(voices or RECIPE_VOICES[name], roots)
