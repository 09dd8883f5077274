"""How hard is the embedded corpus? Train a small log-mel CNN on its train set, print EERs on eval per attack.

Usage: python benchmarks/corpus_difficulty.py [--root runs/synth-demo] [--profile demo] [--epochs 10]
                                              [--n-fft 1024] [--hop 512]

It calibrates the corpus, not a model: it reads the ASVspoof 2019 LA protocols itself, takes the first 2 s of
every file (repeated if shorter) through the toolkit's own log-mel front-end (the one ResNet18 uses: 64 bands,
n_fft 1024, hop 512, dB clipped 80 dB below the peak, per-utterance normalisation), trains a four-block CNN for
a few epochs on 2 CPU cores, and reports EER on eval per attack, pooled over the seen (A01-A06) and unseen
attacks, and overall. A too-easy corpus shows ~0 % everywhere; a too-hard one ~50 %. docs/corpus.md records
the figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from plastispoof.data.synthetic import ATTACKS, SAMPLE_RATE, SUBSETS, audio_dir, protocol_path, write_corpus
from plastispoof.features import LogMel
from plastispoof.runtime import keep_freed_memory

CROP = 2 * SAMPLE_RATE


def read_protocol(root: Path, subset: str) -> list[tuple[str, str]]:
    """(utt_id, attack) per line; attack '-' is bona fide."""
    lines = protocol_path(root, subset).read_text().split("\n")
    return [(parts[1], parts[3]) for parts in (line.split() for line in lines) if parts]


def first_two_seconds(path: Path) -> np.ndarray:
    audio, _ = sf.read(path, dtype="float32")
    return np.tile(audio, -(-CROP // len(audio)))[:CROP]


def small_cnn() -> nn.Module:
    blocks, channels = [], 1
    for width in (16, 32, 64, 64):
        blocks += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                   nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 2))


def eer(bonafide: np.ndarray, spoof: np.ndarray) -> float:
    """Equal error rate for scores where higher = more bona fide (threshold sweep over all scores)."""
    scores = np.concatenate([bonafide, spoof])
    labels = np.concatenate([np.ones(len(bonafide)), np.zeros(len(spoof))])
    labels = labels[np.argsort(scores, kind="stable")]
    miss = np.concatenate([[0], np.cumsum(labels)]) / len(bonafide)  # bona fide at or below the threshold
    false_alarm = 1 - np.concatenate([[0], np.cumsum(1 - labels)]) / len(spoof)  # spoof above it
    i = np.argmin(np.abs(miss - false_alarm))
    return float((miss[i] + false_alarm[i]) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/synth-demo"))
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-fft", type=int, default=1024)
    parser.add_argument("--hop", type=int, default=512)
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    torch.manual_seed(0)
    start = time.perf_counter()
    root = write_corpus(args.root, profile=args.profile, seed=args.seed)
    print(f"corpus ready in {time.perf_counter() - start:.0f} s")

    frontend = LogMel(n_fft=args.n_fft, hop_length=args.hop)
    data = {}
    for subset in SUBSETS:
        trials = read_protocol(root, subset)
        audio = np.stack([first_two_seconds(audio_dir(root, subset) / f"{utt}.flac") for utt, _ in trials])
        with torch.no_grad():
            features = frontend(torch.from_numpy(audio)).unsqueeze(1)
        data[subset] = (features, np.array([attack for _, attack in trials]))
    print(f"features ready in {time.perf_counter() - start:.0f} s")

    model = small_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, attacks = data["train"]
    y = torch.from_numpy((attacks == "-").astype(np.int64))
    weight = torch.tensor([1.0, float((y == 0).sum()) / float((y == 1).sum())])  # balance the classes
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x))
        total = 0.0
        for batch in order.split(32):
            optimiser.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}: loss {total / len(x):.3f}")

    model.eval()
    results = {}
    for subset in ("dev", "eval"):
        features, attacks = data[subset]
        with torch.no_grad():
            logits = model(features)
        scores = (logits[:, 1] - logits[:, 0]).numpy()
        results[subset] = (scores, attacks)
    print(f"trained and scored in {time.perf_counter() - start:.0f} s\n")

    scores, attacks = results["eval"]
    bonafide = scores[attacks == "-"]
    seen = [a for a in ATTACKS if ATTACKS[a].seen]
    print("| attack | seen | EER % |\n|---|---|---|")
    for attack in ATTACKS:
        if np.any(attacks == attack):
            print(f"| {attack} | {'yes' if ATTACKS[attack].seen else 'no'} "
                  f"| {100 * eer(bonafide, scores[attacks == attack]):.1f} |")
    print(f"| seen pooled | | {100 * eer(bonafide, scores[np.isin(attacks, seen)]):.1f} |")
    print(f"| unseen pooled | | {100 * eer(bonafide, scores[(attacks != '-') & ~np.isin(attacks, seen)]):.1f} |")
    print(f"| all (eval) | | {100 * eer(bonafide, scores[attacks != '-']):.1f} |")
    dev_scores, dev_attacks = results["dev"]
    print(f"| all (dev) | | {100 * eer(dev_scores[dev_attacks == '-'], dev_scores[dev_attacks != '-']):.1f} |")


if __name__ == "__main__":
    main()
