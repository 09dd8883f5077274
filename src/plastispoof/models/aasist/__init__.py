"""AASIST and AASIST-L (Jung et al., ICASSP 2022): raw waveform -> sinc filters -> residual encoder -> graphs.

The network, in the order data flows through it:

1. **Sinc front-end**: 70 fixed band-pass filters (129 taps, ``first_conv`` 128 made odd), band edges evenly
   spaced on the mel scale from 0 Hz to 8 kHz, each a Hamming-windowed difference of two sincs. Nothing is
   learnt, so nothing of it is in a state_dict. ``|x|`` -> 3x3 max-pool -> BatchNorm -> SELU gives a
   one-channel (filters x time) map.
2. **Residual encoder**: six blocks of ``conv1 (2x3) -> bn2 -> SELU -> conv2 (2x3)`` plus the (1x3-conv
   projected where the width changes) block input, then a 1x3 max-pool over time. Output (B, C, 23, T'),
   T' = 29 for 64600 samples.
3. **Graph back-end** (:class:`AASISTBackend`): the spectral graph (one node per frequency row, max |.| over
   time, plus a learnt positional embedding) and the temporal graph (one node per frame, max |.| over
   frequency) each go through a graph attention layer and a graph pooling layer; two parallel branches of
   heterogeneous stacking graph attention (HS-GAL: two layers, each with its own master node) combine them;
   the branches meet by element-wise max and the readout (max |.| and mean of each node type, plus the
   master node) feeds a linear layer giving two logits.

Graph attention, as in the paper: for nodes ``x_i``, the edge score is ``w . tanh(W (x_i * x_j) + b) / t``
(``*`` element-wise, ``t`` the temperature), normalised by a softmax over the neighbours ``j``; the new node
is ``P1 (sum_j a_ij x_j) + P2 x_i``, then BatchNorm and SELU. The heterogeneous layer first maps each node
type to a shared space, then uses one score vector ``w`` per edge type (temporal-temporal,
spectral-spectral, across); its master node attends to all nodes with its own ``W_M, w_M`` and is updated
as ``P1_M (sum_i a_i x_i) + P2_M m``. Graph pooling keeps the ``max(int(N * ratio), 1)`` nodes with the
highest ``sigmoid(p . x_i)`` gate, in descending gate order, each scaled by its gate.

Facts of the published network this file keeps so the official checkpoints score as published:

* Module and parameter names equal the official state_dict keys (they are the interface).
* Blocks 2-6 hold a ``bn1`` over their input, but the published network's ``conv1`` reads the block input
  itself: both checkpoints have ``bn1`` weights exactly 1 and biases exactly 0 (never trained). ``bn1`` is
  kept so the checkpoints load strictly; it takes no part in the forward pass.
* ``pool_ratios[3]`` and ``temperatures[3]`` are unused: all four HS-GAL pools use ``pool_ratios[2]`` and
  all four HS-GAL layers ``temperatures[2]``.
* The encoder's six blocks use ``filts[1]``, ``filts[2]``, ``filts[3]`` and then ``filts[4]`` three times.

Growth sites: in every encoder block ``conv1``'s output channels are private to the block (``conv1 -> bn2
-> SELU -> conv2``), so ``conv1`` is the producer, ``bn2`` the norm and ``conv2`` the consumer. ``conv2``'s
outputs are summed with the residual path and feed the next block, so they are not a site.

Modules: ``frontend`` (1), ``encoder`` (2), ``graph`` (3), ``model`` (the two registered models),
``checkpoints`` (reading the official ``.pth`` files), and two CPU fast paths that compute the same function
faster on a CPU: ``cpu_inference`` (eval mode, slices of time) and ``cpu_training`` (channels-last maps).
"""

from plastispoof.models.aasist.checkpoints import OFFICIAL_MODELS, load_official, read_state_dict, state_dict_mismatches
from plastispoof.models.aasist.encoder import ResidualBlock
from plastispoof.models.aasist.frontend import SincFrontEnd, mel_sinc_filters
from plastispoof.models.aasist.graph import (
                                                   AASISTBackend,
                                                   GraphAttentionLayer,
                                                   GraphPool,
                                                   HeterogeneousGraphAttentionLayer,
)
from plastispoof.models.aasist.model import AASIST, AASIST_CONFIG, AASIST_L_CONFIG, AASISTLight

__all__ = ["AASIST", "AASISTBackend", "AASISTLight", "AASIST_CONFIG", "AASIST_L_CONFIG", "GraphAttentionLayer",
           "GraphPool", "HeterogeneousGraphAttentionLayer", "OFFICIAL_MODELS", "ResidualBlock", "SincFrontEnd",
           "load_official", "mel_sinc_filters", "read_state_dict", "state_dict_mismatches"]
