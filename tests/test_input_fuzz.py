"""Random bytes as audio and random text as protocols: every outcome is records or an InputError, nothing else."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from plastispoof.audio import load_audio
from plastispoof.data.protocols import PROTOCOL_FORMATS, read_protocol_file
from plastispoof.data.trials import Trial
from plastispoof.errors import InputError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])



def _wav_header(subtype: str, channels: int) -> bytes:
    """A real WAV header (the file minus its one frame): random bytes after it decode as samples."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((1, channels), np.float32), 8000, format="WAV", subtype=subtype)
    frame_bytes = channels * (2 if subtype == "PCM_16" else 4)
    return buffer.getvalue()[:-frame_bytes]


# Real headers followed by random bytes reach deeper into the decoders than pure noise does.
HEADERS = [b"", _wav_header("PCM_16", 1), _wav_header("PCM_16", 2), _wav_header("FLOAT", 1),
           b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02", b"ID3\x03\x00", b"\xff\xfb\x90\x64",
           b"FORM\x00\x00\x00\x00AIFF"]
SUFFIXES = [".wav", ".flac", ".mp3", ".ogg", ".bin"]


@FUZZ
@given(header=st.sampled_from(HEADERS), body=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_as_audio(header, body, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(header + body)
        try:
            samples = load_audio(path, max_seconds=30.0)
        except InputError as err:
            event("InputError")
            assert str(path) in str(err)
        else:
            event("decoded")
            assert samples.dtype == np.float32 and samples.ndim == 1 and samples.size > 0
            assert np.isfinite(samples).all()


TOKENS = st.sampled_from(["bonafide", "spoof", "-", "LA_0079", "LA_T_1138215", "A07", "eval", "notrim", "alaw",
                          "T_0000000001", ",", "path,label", "file,speaker,label", "a.wav,spoof", "\"", "\t"])
# Lines with the column counts of the real formats, any tokens, and any text.
SHAPED = st.sampled_from([5, 6, 8, 10, 13]).flatmap(lambda n: st.lists(TOKENS, min_size=n, max_size=n))
LINE = st.one_of(SHAPED.map(" ".join), st.lists(TOKENS, max_size=14).map(" ".join), st.text(max_size=60))


@FUZZ
@given(lines=st.lists(LINE, max_size=8), newline=st.sampled_from(["\n", "\r\n", "\r"]),
       format=st.sampled_from(("auto",) + PROTOCOL_FORMATS))
def test_random_text_as_protocol(lines, newline, format):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "protocol.txt"
        path.write_text(newline.join(lines), encoding="utf-8", newline="")
        try:
            trials = read_protocol_file(path, format)
        except InputError as err:
            event("InputError")
            assert "\n" not in str(err)
        else:
            event(f"{len(trials)} trial(s)")
            assert trials and all(isinstance(t, Trial) and t.label in ("bonafide", "spoof") for t in trials)
            assert len({t.utt_id for t in trials}) == len(trials)
