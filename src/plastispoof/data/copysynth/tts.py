"""TTS spoofs from the engines installed on the machine: eSpeak NG (formant synthesis), Festival (diphone
concatenation) and Flite (diphone / clustergen). Each engine is one family with one attack ID.

Every utterance varies the engine's voice, rate and pitch (drawn from the job's seed), so one sentence said
twice is two different takes. eSpeak NG speaks every built-in language; the Festival and Flite voices Debian
ships speak English only, so they refuse other languages rather than read French with English rules (a
language cue would then tell the classes apart).
"""

from __future__ import annotations

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

    def missing(self) -> str | None:
        """The ``apt-get install`` line that would make this engine usable, or None when it is."""
        if shutil.which(self.program) is None or (self.voice_dir and not Path(self.voice_dir).is_dir()):
            return f"apt-get install {' '.join(self.packages)}"
        return None

    def check(self, languages: set[str]) -> None:
        """Raise :class:`InputError` when the engine is not installed or cannot speak one of ``languages``."""
        install = self.missing()
        if install:
            raise InputError(f"TTS engine {self.name} is not installed; install it with: {install}")
        unsupported = sorted(languages - set(self.languages))
        if unsupported:
            raise InputError(f"TTS engine {self.name} cannot speak {', '.join(unsupported)} (it speaks "
                             f"{', '.join(self.languages)}); leave it out of --tts")

    def speak(self, text: str, language: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """``text`` in ``language`` with a voice, rate and pitch drawn from ``rng``: (float audio, sample rate)."""
        with tempfile.TemporaryDirectory(prefix="plastispoof-tts-") as folder:
            wav = Path(folder) / "out.wav"
            command = self._command(text, language, wav, rng)
            result = subprocess.run(command, input=text if self.name == "festival" else None, capture_output=True,
                                    text=True, timeout=120)
            if result.returncode != 0 or not wav.is_file():
                raise InputError(f"TTS engine {self.name} failed on {text[:40]!r}: "
                                 f"{(result.stderr or result.stdout).strip()[:200]}")
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
        # festival: text on stdin; kal diphone voice with a random duration stretch and F0 mean.
        return ["text2wave", "-o", str(wav), "-eval",
                f"(begin (voice_kal_diphone) (Parameter.set 'Duration_Stretch {stretch:.2f}))"]


TTS_ENGINES: dict[str, TtsEngine] = {e.name: e for e in (
    TtsEngine("espeak-ng", "T01", "eSpeak NG formant synthesis (random voice variant, rate, pitch)",
              "espeak-ng", ("espeak-ng",), ("en", "fr", "es", "it", "ru")),
    TtsEngine("festival", "T02", "Festival diphone synthesis, kal voice (random duration stretch)",
              "text2wave", ("festival", "festvox-kallpc16k"), ("en",),
              voice_dir="/usr/share/festival/voices/english/kal_diphone"),
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
