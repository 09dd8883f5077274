"""TTS spoofs from the engines installed on the machine: eSpeak NG (formant synthesis), Festival (diphone
concatenation) and Flite (diphone / clustergen). Each engine is one family with one attack ID.

Every utterance varies the engine's voice, rate and pitch (drawn from the job's seed), so one sentence said
twice is two different takes. eSpeak NG speaks every built-in language; Festival speaks the languages Debian
ships a voice for (English: festvox-kallpc16k, festvox-us-slt-hts; Italian: festvox-italp16k, festvox-itapc16k;
Russian: festvox-ru), Flite English only. An engine refuses a language it has no voice for rather than read
French with English rules (a language cue would then tell the classes apart).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from plastispoof.errors import InputError

# A few short sentences per language, spoken when no transcript is given. Written for this project.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": ("Please hold while we connect your call.", "The meeting starts at nine tomorrow morning.",
           "Your new password has been saved.", "Press one to hear the menu again.",
           "The last train leaves in ten minutes.", "Thank you for waiting, an agent will answer soon."),
    "fr": ("Veuillez patienter, nous transférons votre appel.", "La réunion commence demain à neuf heures.",
           "Votre nouveau mot de passe est enregistré.", "Appuyez sur un pour réécouter le menu.",
           "Le dernier train part dans dix minutes.", "Merci de votre patience, un conseiller va répondre."),
    "es": ("Por favor espere mientras conectamos su llamada.", "La reunión empieza mañana a las nueve.",
           "Su nueva contraseña ha sido guardada.", "Pulse uno para volver a escuchar el menú.",
           "El último tren sale en diez minutos.", "Gracias por esperar, un agente le atenderá pronto."),
    "it": ("Attenda in linea, stiamo trasferendo la chiamata.", "La riunione inizia domani alle nove.",
           "La nuova password è stata salvata.", "Prema uno per ascoltare di nuovo il menu.",
           "L'ultimo treno parte tra dieci minuti.", "Grazie per l'attesa, un operatore risponderà a breve."),
    "ru": ("Пожалуйста, подождите, мы соединяем вас.", "Совещание начнётся завтра в девять утра.",
           "Ваш новый пароль сохранён.", "Нажмите один, чтобы прослушать меню ещё раз.",
           "Последний поезд уходит через десять минут.", "Спасибо за ожидание, оператор скоро ответит."),
}


@dataclass(frozen=True)
class TtsEngine:
    """One installed TTS program."""

    name: str
    attack_id: str
    description: str
    program: str  # the executable that must be on PATH
    packages: tuple[str, ...]  # Debian packages that provide it (and a voice)
    languages: tuple[str, ...]
    voice_dir: str | None = None  # a folder that must exist for the engine to have a voice
    # Festival: {language: ((voice, its folder, its Debian package), ...)}; a language counts when one is installed
    voices: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = ()

    def missing(self) -> str | None:
        """The ``apt-get install`` line that would make this engine usable, or None when it is."""
        if shutil.which(self.program) is None or (self.voice_dir and not Path(self.voice_dir).is_dir()):
            return f"apt-get install {' '.join(self.packages)}"
        return None

    def installed_voices(self, language: str) -> list[str]:
        """The voices of ``language`` installed here (engines without a voice table: [""] when it speaks it)."""
        if not self.voices:
            return [""] if language in self.languages else []
        table = dict(self.voices).get(language, ())
        return [voice for voice, folder, _ in table if Path(folder).is_dir()]

    def speaks(self, language: str) -> bool:
        return bool(self.installed_voices(language))

    def check(self, languages: set[str]) -> None:
        """Raise :class:`InputError` when the engine is not installed or cannot speak one of ``languages``."""
        install = self.missing()
        if install:
            raise InputError(f"TTS engine {self.name} is not installed; install it with: {install}")
        for language in sorted(languages & set(self.languages)):
            if not self.speaks(language):
                packages = " ".join(package for _, _, package in dict(self.voices).get(language, ()))
                raise InputError(f"TTS engine {self.name} has no {language} voice installed; install one with: "
                                 f"apt-get install {packages}")
        unsupported = sorted(languages - set(self.languages))
        if unsupported:
            raise InputError(f"TTS engine {self.name} cannot speak {', '.join(unsupported)} (it speaks "
                             f"{', '.join(self.languages)}); leave it out of --tts")

    def speak(self, text: str, language: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """``text`` in ``language`` with a voice, rate and pitch drawn from ``rng``: (float audio, sample rate)."""
        with tempfile.TemporaryDirectory(prefix="plastispoof-tts-") as folder:
            wav = Path(folder) / "out.wav"
            command = self._command(text, language, wav, rng)
            stdin = None
            if self.name == "festival":
                # Festival reads its text on stdin, in the encoding its language's rules expect (Italian:
                # Latin-1); the kal diphone voice crashes on a leading ellipsis ("... letters of ...").
                text = text.lstrip(" .\u2026") or text
                stdin = text.encode(_FESTIVAL_ENCODING.get(language, "utf-8"), errors="replace")
            result = subprocess.run(command, input=stdin, capture_output=True, timeout=120)
            if self.name == "festival" and (result.returncode != 0 or not wav.is_file()
                                            or wav.stat().st_size <= 44):
                # Festival's letter-to-sound rules stop at characters they have no rule for (the Russian ones at
                # a dot inside a token, a dash or a lone comma): say the words once more, without punctuation.
                plain = " ".join(re.sub(r"[^\w\s]+", " ", text).split())
                stdin = plain.encode(_FESTIVAL_ENCODING.get(language, "utf-8"), errors="replace")
                result = subprocess.run(command, input=stdin, capture_output=True, timeout=120)
            if result.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
                message = (result.stderr or result.stdout).decode("utf-8", errors="replace").strip()
                raise InputError(f"TTS engine {self.name} failed on {text[:40]!r}: {message[:200]}")
            audio, rate = sf.read(wav, dtype="float64", always_2d=True)
        return audio.mean(axis=1), rate

    def _command(self, text: str, language: str, wav: Path, rng: np.random.Generator) -> list[str]:
        stretch = float(rng.uniform(0.85, 1.2))  # >1 = slower
        if self.name == "espeak-ng":
            variant = str(rng.choice([f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 6)]))
            return ["espeak-ng", "-v", f"{language}+{variant}", "-s", str(int(165 / stretch)),
                    "-p", str(int(rng.integers(30, 71))), "-w", str(wav), "--", text]
        if self.name == "flite":
            voice = str(rng.choice(["kal16", "slt", "rms", "awb"]))
            return ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.2f}",
                    "--setf", f"int_f0_target_mean={int(rng.integers(95, 190))}", "-t", text, "-o", str(wav)]
        # festival: text on stdin; one of the language's installed voices with a random duration stretch.
        voice = str(rng.choice(self.installed_voices(language)))
        return ["text2wave", "-o", str(wav), "-eval",
                f"(begin (voice_{voice}) (Parameter.set 'Duration_Stretch {stretch:.2f}))"]


_FESTIVAL = "/usr/share/festival/voices"
_FESTIVAL_ENCODING = {"it": "latin-1"}  # the Italian letter-to-sound rules match Latin-1 bytes, not UTF-8
TTS_ENGINES: dict[str, TtsEngine] = {e.name: e for e in (
    TtsEngine("espeak-ng", "T01", "eSpeak NG formant synthesis (random voice variant, rate, pitch)",
              "espeak-ng", ("espeak-ng",), ("en", "fr", "es", "it", "ru")),
    TtsEngine("festival", "T02", "Festival: diphone (English kal, Italian lp / pc), HTS (English slt) or "
              "clunits (Russian msu_ru_nsh) voices (random duration stretch)",
              "text2wave", ("festival", "festvox-kallpc16k"), ("en", "it", "ru"),
              voices=(("en", (("kal_diphone", f"{_FESTIVAL}/english/kal_diphone", "festvox-kallpc16k"),
                              ("cmu_us_slt_arctic_hts", f"{_FESTIVAL}/us/cmu_us_slt_arctic_hts",
                               "festvox-us-slt-hts"))),
                      ("it", (("lp_diphone", f"{_FESTIVAL}/italian/lp_diphone", "festvox-italp16k"),
                              ("pc_diphone", f"{_FESTIVAL}/italian/pc_diphone", "festvox-itapc16k"))),
                      ("ru", (("msu_ru_nsh_clunits", f"{_FESTIVAL}/russian/msu_ru_nsh_clunits", "festvox-ru"),)))),
    TtsEngine("flite", "T03", "Flite (kal16, slt, rms or awb voice; random duration stretch and F0 mean)",
              "flite", ("flite",), ("en",)),
)}


def engine(name: str) -> TtsEngine:
    """The TTS engine called ``name``, or :class:`InputError` listing the known ones."""
    if name not in TTS_ENGINES:
        raise InputError(f"unknown TTS engine {name!r}; known: {', '.join(TTS_ENGINES)}")
    return TTS_ENGINES[name]


def builtin_sentence(language: str, index: int) -> str:
    """Built-in sentence ``index`` (modulo their number) of ``language``."""
    if language not in SENTENCES:
        raise InputError(f"no built-in sentences for language {language!r}; known: {', '.join(SENTENCES)}")
    sentences = SENTENCES[language]
    return sentences[index % len(sentences)]
