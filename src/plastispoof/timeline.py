"""The timeline picture of ``plastispoof score FILE --plot DIR``: for one file, its waveform, its spectrogram and
the score of each window (at the window's centre, a bar spanning the window) against the decision threshold,
so a listener can see *where* in a long recording the model hears a spoof.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from plastispoof.audio import load_audio
from plastispoof.plots import save_figure


def timeline_path(out_dir: str | Path, audio_path: str | Path, taken: Collection[Path] = ()) -> Path:
    """``<out_dir>/<file name with odd characters replaced>.png``; when that path is ``taken`` (another file of the
    same name, from another folder), the parent folders' names are prefixed until it is free.

    >>> timeline_path("t", "x/call.wav").as_posix(), timeline_path("t", "y/call.wav", [Path("t/call.wav.png")]).name
    ('t/call.wav.png', 'y_call.wav.png')
    """
    parts = Path(audio_path).parts
    for depth in range(1, len(parts) + 1):
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts[-depth:]).lstrip("/"))
        path = Path(out_dir) / f"{name}.png"
        if path not in taken:
            return path
    raise ValueError(f"no free timeline name for {audio_path} in {out_dir}")  # the same file given twice


def plot_timeline(detector, result, path: str | Path) -> Path:
    """Write the timeline PNG of one scored file (``result`` from :meth:`Detector.iter_results` with segments)
    to ``path`` (:func:`timeline_path` names one)."""
    return save_figure(timeline_figure(detector, result), path)


def timeline_figure(detector, result) -> Figure:
    """Waveform, spectrogram, and the per-window curve against the threshold (three axes, shared time).

    The curve is the llr per window when the detector is calibrated (threshold in the llr domain for ``bayes``,
    else the score threshold mapped through the calibration), otherwise the raw score.
    """
    if not result.segments:
        raise ValueError("the timeline needs a result scored with segments=True")
    waveform = load_audio(result.path, detector.sample_rate)
    rate = detector.sample_rate
    times = np.arange(len(waveform)) / rate
    figure = Figure(figsize=(10, 7))
    wave_axes, spec_axes, score_axes = figure.subplots(3, 1, sharex=True)
    wave_axes.plot(times, waveform, lw=0.4, color="tab:gray")
    wave_axes.set_ylabel("amplitude")
    wave_axes.set_title(f"{Path(result.path).name}: {result.model}, score {result.score:.3f}"
                        + (f", llr {result.llr:.2f}" if result.llr is not None else "")
                        + (f" -> {result.decision} ({result.operating_point})" if result.decision else ""))
    n_fft = 512 if len(waveform) > 512 else max(16, 1 << (len(waveform).bit_length() - 1))
    spec_axes.specgram(waveform, NFFT=n_fft, Fs=rate, noverlap=n_fft // 2, cmap="magma")
    spec_axes.set_ylabel("Hz")

    calibrated = result.llr is not None
    values = np.array([s["llr"] if calibrated else s["score"] for s in result.segments])
    starts = np.array([s["start_s"] for s in result.segments])
    ends = np.array([s["end_s"] for s in result.segments])
    centres = (starts + ends) / 2
    score_axes.plot(centres, values, "o-", color="tab:blue", label="llr per window" if calibrated else
                    "score per window")
    score_axes.hlines(values, starts, ends, color="tab:blue", alpha=0.25, lw=4)
    threshold = result.threshold
    if threshold is not None:
        if calibrated and result.operating_point != "bayes":
            threshold = float(detector.calibration.llr(threshold))
        score_axes.axhline(threshold, color="tab:red", ls="--", label=f"threshold ({result.operating_point})")
    score_axes.set_xlabel("seconds")
    score_axes.set_ylabel("llr (bona fide vs spoof)" if calibrated else "score (higher = bona fide)")
    score_axes.set_xlim(0, max(times[-1] if len(times) else 0, ends.max()))
    score_axes.legend(loc="best", fontsize="small")
    return figure
