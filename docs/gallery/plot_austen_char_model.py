"""
A character model of Jane Austen
================================

An LSTM learns to predict the next character of *Pride and Prejudice* and is scored on
*Persuasion*, a novel it never saw, in bits per character against a unigram baseline (the
training text's character frequencies). Then it writes, one character at a time. Both novels
ship in :mod:`pylstm.datasets`; the vocabulary, windowing, model and sampler are those of the
full program ``python -m pylstm.examples.austen``, imported here.
"""

# %%
# Text to windows of character ids
# ---------------------------------
# Pride and Prejudice's 75 distinct characters get ids 1 to 75; id 0 stands for characters it
# lacks, as Keras's ``StringLookup`` reserves index 0 for out-of-vocabulary tokens. Each
# training sample is a window of characters with the same window shifted by one as targets.
import math
import os

import matplotlib.pyplot as plt
import numpy as np

import pylstm
from pylstm.callbacks import Callback, EarlyStopping
from pylstm.datasets import load_austen
from pylstm.examples.austen import (FULL, QUICK, Vocabulary, build_model, make_windows, sample,
                                    unigram_bits_per_char)

# PYLSTM_DOCS_FAST=1 (the documentation's CI): the example's --quick settings (a 64-unit
# model on 60,000 characters) for 2 epochs. Otherwise its full run: 256 units on the whole
# novel, a few minutes on 2 cores.
FAST = os.environ.get("PYLSTM_DOCS_FAST") == "1"
settings = dict(QUICK, epochs=2) if FAST else dict(FULL)
SEED = 0

pylstm.utils.set_random_seed(SEED)
train_text = load_austen("pride_and_prejudice")[:settings["train_chars"]]
eval_text = load_austen("persuasion")[:settings["eval_chars"]]
vocab = Vocabulary(train_text)
train_ids, eval_ids = vocab.encode(train_text), vocab.encode(eval_text)
x_train, y_train = make_windows(train_ids, settings["seq_len"])
x_eval, y_eval = make_windows(eval_ids, settings["eval_len"])
print(f"Training: {len(train_text):,} characters -> {x_train.shape} windows; "
      f"evaluation: {len(eval_text):,} characters of Persuasion.")
print("First training window:", repr(vocab.decode(x_train[0])))

# %%
# Training, with the loss after every batch
# -----------------------------------------
# ``Embedding -> LSTM(return_sequences=True) -> Dense(softmax)`` predicts the next character
# at every timestep. A small :class:`~pylstm.callbacks.Callback` records the running mean of
# the loss that ``fit`` hands to ``on_train_batch_end`` (what Keras's progress bar shows).


class BatchLosses(Callback):
    """Records `(fractional epoch, running mean loss)` after every training batch."""

    def on_train_begin(self, logs=None):
        self.points = []
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.points.append((self.epoch + (batch + 1) / self.params["steps"], logs["loss"]))


model = build_model(vocab.size, settings["embedding_dim"], settings["units"], SEED)
model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=settings["learning_rate"],
                                               clipnorm=1.0),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
batch_losses = BatchLosses()
history = model.fit(x_train, y_train, batch_size=settings["batch_size"],
                    epochs=settings["epochs"], validation_split=settings["validation_split"],
                    callbacks=[batch_losses, EarlyStopping(monitor="val_loss",
                                                           patience=settings["patience"],
                                                           restore_best_weights=True)],
                    verbose=0)

# %%
# Bits per character on an unseen novel
# --------------------------------------
# The crossentropy in nats divided by ln 2. The full run reaches about 2.25 bits per character
# on Persuasion against 4.44 for the unigram baseline; the fast run's small model, trained on
# a tenth of a novel for two epochs, sits in between.
loss, accuracy = model.evaluate(x_eval, y_eval, batch_size=settings["batch_size"], verbose=0)
lstm_bpc = loss / math.log(2)
unigram_bpc = unigram_bits_per_char(train_ids, y_eval, vocab.size)
print(f"Bits per character on Persuasion: LSTM {lstm_bpc:.3f} "
      f"(next character right {accuracy:.1%}), unigram {unigram_bpc:.3f}.")

points = np.array(batch_losses.points)
fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(points[:, 0], points[:, 1] / math.log(2), lw=1,
        label="training (running mean over the epoch)")
epochs = np.arange(1, len(history.history["val_loss"]) + 1)
ax.plot(epochs, np.array(history.history["val_loss"]) / math.log(2), "o-",
        label="validation (end of Pride and Prejudice)")
ax.axhline(unigram_bpc, color="tab:gray", ls="--", label="unigram baseline on Persuasion")
best = int(np.argmin(history.history["val_loss"])) + 1   # the weights early stopping kept
ax.plot([best], [lstm_bpc], "*", color="tab:red", markersize=12,
        label="LSTM on Persuasion (kept epoch)")
ax.set_xlabel("epoch")
ax.set_ylabel("bits per character")
ax.set_title("Character model of Pride and Prejudice")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# Writing like Austen, one character at a time
# ---------------------------------------------
# A stateful twin of the model (batch of one) receives the trained weights; ``sample`` feeds
# it the prompt, then each drawn character, carrying the LSTM's state from call to call. Below
# temperature 1 the text is more conservative, above it more random.
sampler = build_model(vocab.size, settings["embedding_dim"], settings["units"], SEED,
                      batch_size=1, stateful=True)
sampler.set_weights(model.get_weights())
rng = np.random.default_rng(SEED)
for temperature in (0.5, 1.0):
    text = sample(sampler, vocab, "Elizabeth", settings["sample_len"], temperature, rng)
    print(f"Temperature {temperature}:\n{text}\n")
