"""
Masks and variable-length sequences
===================================

Real batches hold sequences of different lengths, padded to one length. This example shows
the three ways pylstm keeps the padding from changing the results, and checks that it does:

* the Keras-style API: :func:`pylstm.utils.pad_sequences` (``padding="pre"`` or ``"post"``)
  then a :class:`~pylstm.layers.Masking` layer, or :class:`~pylstm.layers.Embedding` with
  ``mask_zero=True`` for token ids; the mask travels to the LSTM, which skips padded steps;
* the PyTorch-style API: :class:`pylstm.nn.LSTM` with ``lengths=`` or a packed sequence from
  :func:`pylstm.nn.utils.rnn.pack_padded_sequence`, which computes only the real steps.

In every case each sequence's result equals the result of running it alone, unpadded.
"""

# %%
# Sequences of different lengths, padded before or after
# -------------------------------------------------------
# Three stretches of the monthly sunspot numbers (:func:`pylstm.datasets.load_sunspots`),
# 5, 9 and 14 months long. The sunspot number can be 0, so 0 cannot mark padding here: the
# padding value is -1, which no reading takes, and ``Masking(mask_value=-1.0)`` looks for it.
import re

import matplotlib.pyplot as plt
import numpy as np

import pylstm
from pylstm import nn
from pylstm.datasets import load_austen, load_sunspots
from pylstm.layers import LSTM, Embedding, Input, Masking
from pylstm.models import Sequential
from pylstm.nn.utils.rnn import pack_padded_sequence
from pylstm.utils import pad_sequences

pylstm.utils.set_random_seed(0)
series = (load_sunspots().data / 100.0).astype("float32")
lengths = [5, 9, 14]
sequences = [series[start:start + n, None] for start, n in zip((600, 1200, 2400), lengths)]
pre = pad_sequences(sequences, dtype="float32", padding="pre", value=-1.0)
post = pad_sequences(sequences, dtype="float32", padding="post", value=-1.0)
print("padded batch shape:", pre.shape)
print("'pre' padding, first sequence: ", pre[0, :, 0].round(2))
print("'post' padding, first sequence:", post[0, :, 0].round(2))

# %%
# ``Masking`` in front of an LSTM
# -------------------------------
# The LSTM returns each sequence's output at its last real step. With either padding it is
# the output of the sequence alone; without the mask the padded steps feed the LSTM too.
masked = Sequential([Input((None, 1)), Masking(mask_value=-1.0), LSTM(8, seed=0)])
unmasked = Sequential([Input((None, 1)), LSTM(8, seed=0)])
unmasked.set_weights(masked.get_weights())
alone = np.concatenate([masked.predict(s[None], verbose=0) for s in sequences])
for name, batch in (("pre", pre), ("post", post)):
    print(f"padding={name!r}: masked differs from alone by "
          f"{np.abs(masked.predict(batch, verbose=0) - alone).max():.1e}, unmasked by "
          f"{np.abs(unmasked.predict(batch, verbose=0) - alone).max():.1e}")

# %%
# ``Embedding(mask_zero=True)`` for token ids
# -------------------------------------------
# For ids, 0 is the padding and the embedding makes the mask. Six words of Persuasion
# (:func:`pylstm.datasets.load_austen`) as letter ids 1 to 26.
words = re.findall(r"[a-z]+", load_austen("persuasion").lower())[20:26]
print(words)
ids = [[ord(c) - ord("a") + 1 for c in w] for w in words]
embedded = Sequential([Input((None,), dtype="int32"), Embedding(27, 4, mask_zero=True),
                       LSTM(8, seed=1)])
alone = np.concatenate([embedded.predict(np.array([i]), verbose=0) for i in ids])
for padding in ("pre", "post"):
    batch = pad_sequences(ids, padding=padding)
    difference = np.abs(embedded.predict(batch, verbose=0) - alone).max()
    print(f"padding={padding!r}, batch {batch.shape}: differs from alone by {difference:.1e}")

# %%
# The PyTorch-style API: lengths and packed sequences
# ---------------------------------------------------
# ``pylstm.nn.LSTM`` takes right-padded (``"post"``) input with ``lengths=`` (a shortcut for
# packing), or a :class:`~pylstm.nn.utils.rnn.PackedSequence`, as ``torch.nn.LSTM`` does:
# ``h_n`` holds each sequence's state at its own last step, and the output is zero past each
# sequence's end.
module = nn.LSTM(1, 8, batch_first=True, seed=0).eval()
h_alone = np.concatenate([module(s[None])[1][0][0] for s in sequences])
output, (h_n, c_n) = module(post, lengths=lengths)
print("lengths=: h_n differs from alone by", np.abs(h_n[0] - h_alone).max())
print("output past the end of the first sequence:", np.abs(output[0, lengths[0]:]).max())
packed = pack_padded_sequence(post, lengths, batch_first=True, enforce_sorted=False)
print("steps computed:", packed.data.shape[0], "of", post.shape[0] * post.shape[1],
      "padded; per step", packed.batch_sizes)
_, (h_packed, _) = module(packed)
print("packed: h_n differs from alone by", np.abs(h_packed[0] - h_alone).max())

# %%
# The output as padding grows
# ---------------------------
# One 14-month sequence with 0 to 40 padded steps, before or after. With the mask the output
# does not move; without it, the LSTM reads the padding as readings of -1. Padding after the
# sequence moves the output most, since the LSTM reads it last; padding before is partly
# washed out by the real steps that follow, but not entirely (the batch above differs by
# about 0.1 with ``"pre"`` padding and no mask).
extra = np.arange(41)
sequence = sequences[2]
curves = {}
for padding in ("pre", "post"):
    curves[padding] = {
        model_name: np.array([
            model.predict(pad_sequences([sequence], maxlen=len(sequence) + k, dtype="float32",
                                        padding=padding, value=-1.0), verbose=0)[0, 0]
            for k in extra])
        for model_name, model in (("masked", masked), ("unmasked", unmasked))}

fig, (image, drift) = plt.subplots(1, 2, figsize=(12, 4))
both = np.concatenate([pre[..., 0], np.full((1, pre.shape[1]), np.nan), post[..., 0]])
shown = image.imshow(np.ma.masked_equal(both, -1.0), aspect="auto", cmap="viridis")
image.set_yticks(range(7), ["pre"] * 3 + [""] + ["post"] * 3)
image.set_xlabel("timestep (white: padding, masked)")
image.set_title("One batch, padded before and after")
fig.colorbar(shown, ax=image, label="sunspot number / 100")
for padding, style in (("pre", "-"), ("post", "--")):
    for model_name, color in (("masked", "tab:green"), ("unmasked", "tab:red")):
        drift.plot(extra, curves[padding][model_name], style, color=color,
                   label=f"{model_name}, padding={padding!r}")
drift.set_xlabel("padded steps added")
drift.set_ylabel("LSTM output, first unit")
drift.set_title("A 14-month sequence: output against padding")
drift.legend()
fig.tight_layout()
plt.show()
