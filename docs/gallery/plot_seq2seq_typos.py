"""
Correcting typos with an encoder-decoder
========================================

A character-level sequence-to-sequence model, written as Keras's ``lstm_seq2seq`` tutorial
writes one: an encoder LSTM reads a word typed with an error, a decoder LSTM starts from the
encoder's final states and writes the corrected word one character at a time. Words come from
*Pride and Prejudice* (training) and *Persuasion* (evaluation), shipped in
:mod:`pylstm.datasets`; half of them get one typing error (a letter deleted, inserted,
replaced, or two swapped). The functions are those of ``python -m pylstm.examples.seq2seq``.
"""

# %%
# Typed words and their corrections
# ---------------------------------
# Frequent words come often, as in real text. The decoder learns by teacher forcing: its
# input is the correct word after a start token, its target the same word followed by an end
# token; the padding (id 0) is masked by ``Embedding(mask_zero=True)``.
import os

import matplotlib.pyplot as plt
import numpy as np

import pylstm
from pylstm.callbacks import Callback
from pylstm.datasets import load_austen
from pylstm.examples.seq2seq import FULL, QUICK, build_models, correct, encode, pairs, words_of

# PYLSTM_DOCS_FAST=1 (the documentation's CI): the example's --quick settings (64 units,
# 10,000 training words of up to 8 letters). Otherwise its full run, about a minute on 2 cores.
FAST = os.environ.get("PYLSTM_DOCS_FAST") == "1"
settings = QUICK if FAST else FULL
SEED = 0

pylstm.utils.set_random_seed(SEED)
rng = np.random.default_rng(SEED)
train_words = words_of(load_austen("pride_and_prejudice"), settings["max_len"])
eval_words = words_of(load_austen("persuasion"), settings["max_len"])
typed, target, _ = pairs(train_words, settings["train_words"], rng)
eval_typed, eval_target, eval_error = pairs(eval_words, settings["eval_words"], rng)
width = settings["max_len"] + 1
x_typed = encode(typed, width)
x_decoder = encode(target, width, start=True)
y = encode(target, width, end=True)
for t, w in list(zip(typed, target))[:5]:
    print(f"{t:>10} -> {w}")

# %%
# The training model and the inference models
# -------------------------------------------
# ``build_models`` returns the training model and, sharing its layers, an inference encoder
# (typed word -> states) and decoder (one step: token and states -> next-character
# probabilities and new states).


class BatchLosses(Callback):
    """Records the running mean of the loss after every training batch."""

    def on_train_begin(self, logs=None):
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


model, encoder, decoder = build_models(settings["embedding_dim"], settings["units"], SEED)
model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=settings["learning_rate"],
                                               clipnorm=1.0),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.summary()
batch_losses = BatchLosses()
model.fit([x_typed, x_decoder], y, batch_size=settings["batch_size"], epochs=settings["epochs"],
          callbacks=[batch_losses], verbose=0)

# %%
# Greedy decoding and the score
# -----------------------------
# ``correct`` decodes every evaluation word at once, one character per step, feeding back the
# most probable character. Leaving every word as typed is right on the half typed without an
# error: the model must beat that. The full run gets about 77 % of words right against 50 %;
# the fast run's small model gets fewer. Some errors cannot be undone from the word alone
# ("yor" may be "your" or "or").
corrected = correct(encoder, decoder, encode(eval_typed, width), settings["max_len"])
right = np.array([c == t for c, t in zip(corrected, eval_target)])
as_typed = np.array([t == w for t, w in zip(eval_typed, eval_target)])
print(f"Exact match on {len(right)} words of Persuasion: encoder-decoder {right.mean():.1%}, "
      f"left as typed {as_typed.mean():.1%}.")
for i in np.flatnonzero(eval_error)[:10]:
    print(f"  {eval_typed[i]:>10} -> {corrected[i]:<10} (expected {eval_target[i]})"
          f"{'' if right[i] else '  x'}")

steps_per_epoch = len(batch_losses.losses) / settings["epochs"]
fig, (curve, bars) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=(3, 2))
curve.plot(np.arange(1, len(batch_losses.losses) + 1) / steps_per_epoch, batch_losses.losses)
curve.set_xlabel("epoch")
curve.set_ylabel("crossentropy (running mean over the epoch)")
curve.set_title("Training loss")
groups = ["all words", "typed with\nan error", "typed\nwithout one"]
model_scores = [right.mean(), right[eval_error].mean(), right[~eval_error].mean()]
typed_scores = [as_typed.mean(), 0.0, 1.0]
x = np.arange(len(groups))
bars.bar(x - 0.2, model_scores, 0.4, label="encoder-decoder", color="tab:red")
bars.bar(x + 0.2, typed_scores, 0.4, label="left as typed", color="tab:gray")
bars.set_xticks(x, groups)
bars.set_ylim(0, 1.05)
bars.set_ylabel("exact-match accuracy")
bars.set_title("Persuasion's words")
bars.legend(loc="upper left")
fig.tight_layout()
plt.show()
