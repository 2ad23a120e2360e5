"""Character-level language model of Jane Austen with an LSTM: the main text example.

Run it with `python -m pylstm.examples.austen` (add `--quick` for a smoke run of a few seconds).
It:
1. loads Pride and Prejudice (training) and Persuasion (evaluation), both from
   `pylstm.datasets.load_austen`,
2. maps characters to ids: Pride and Prejudice's 75 characters get ids 1..75 and id 0 stands for
   any character it lacks (Persuasion's `&` and `Q`), as Keras's `StringLookup` reserves
   index 0 for out-of-vocabulary tokens,
3. cuts each text into windows of characters, each with the window shifted by one character as
   its targets (one next-character prediction per timestep),
4. trains `Sequential([Input, Embedding, LSTM(return_sequences=True), Dense(softmax)])` with
   Adam on sparse categorical crossentropy, with a progress bar, holding out the last
   `--validation-split` of the training windows (the end of the novel) to watch the
   validation loss: training stops when it has not improved for `--patience` epochs, and the
   weights of the best epoch are kept (`EarlyStopping(restore_best_weights=True)`),
5. reports bits per character on Persuasion beside a unigram baseline (Pride and Prejudice's
   character frequencies) scored on the same characters, and fails if the LSTM does not beat it,
6. saves the model to one file (`--output-dir`),
7. copies the weights into a stateful twin of the model (batch of 1) and samples text from it,
   one character at a time, at a few temperatures (seeded).

Bits per character: the model's mean crossentropy in nats (what `evaluate` returns) divided by
ln 2. Persuasion is read in windows of `--eval-len` characters, each starting from a zero state,
so the few characters at the start of a window, scored with little context, weigh little.

With the defaults (6 epochs, 256 units, the last 10 % of the training windows held out) the
validation loss falls on every epoch, so all 6 run and the last epoch's weights are kept; the
LSTM reaches 2.25 bits per character on Persuasion (55.8 % of next characters right), against
4.44 for the unigram baseline, after 52 s of training on an idle 2-core AMD EPYC (the whole
run takes about a minute; three times that on a machine busy with other jobs). The LSTM's
per-timestep matrix products are small: on a machine busy with other jobs,
`OPENBLAS_NUM_THREADS=1` stops OpenBLAS's threads from waiting on each other
(benchmarks/README.md, "Thread policy measurements").
"""

import argparse
import math
import os
import sys
import time

import numpy as np

import pylstm
from pylstm.callbacks import EarlyStopping
from pylstm.datasets import load_austen
from pylstm.layers import LSTM, Dense, Embedding, Input
from pylstm.models import Sequential

OOV_ID = 0   # id of characters the training text lacks (Keras's StringLookup OOV index)
OOV_CHAR = "\N{REPLACEMENT CHARACTER}"   # what OOV_ID decodes to; the texts are ASCII

# The full run takes about 3 to 6 minutes on 2 cores; `--quick` a few seconds. Any argument
# given explicitly overrides these.
FULL = {"epochs": 6, "units": 256, "embedding_dim": 32, "seq_len": 100, "batch_size": 32,
        "learning_rate": 0.01, "train_chars": None, "eval_chars": None, "eval_len": 1000,
        "sample_len": 400, "validation_split": 0.1, "patience": 1}
QUICK = {"epochs": 3, "units": 64, "embedding_dim": 16, "seq_len": 50, "batch_size": 64,
         "learning_rate": 0.02, "train_chars": 60_000, "eval_chars": 20_000, "eval_len": 500,
         "sample_len": 120, "validation_split": 0.1, "patience": 1}


class Vocabulary:
    """Characters <-> ids: the sorted characters of a text get ids 1..V-1, id 0 is OOV.

    Args:
        text: str, the training text.

    Attributes:
        chars: list of str, `chars[i]` is the character of id `i`; `chars[OOV_ID]` is
            `OOV_CHAR`, U+FFFD.
        size: int, V = number of distinct characters + 1.
    """

    def __init__(self, text):
        self.chars = [OOV_CHAR] + sorted(set(text))
        self._ids = {c: i for i, c in enumerate(self.chars) if i != OOV_ID}
        self.size = len(self.chars)

    def encode(self, text):
        """Returns `int64` ids of shape `(len(text),)`; unknown characters map to `OOV_ID`."""
        return np.array([self._ids.get(c, OOV_ID) for c in text], dtype=np.int64)

    def decode(self, ids):
        """Returns the str of an iterable of ids."""
        return "".join(self.chars[int(i)] for i in ids)


def make_windows(ids, length):
    """Cuts a text into non-overlapping windows, each with its next-character targets.

    Args:
        ids: int array `(N,)`, the text's ids.
        length: int, T, characters per window.

    Returns:
        `(x, y)`, both of `ids`'s dtype and shape `(n, T)` with `n = (N - 1) // T`:
        `x[i] = ids[i*T:(i+1)*T]` and `y[i] = ids[i*T+1:(i+1)*T+1]`. The last characters
        that do not fill a window are dropped.

    Raises:
        ValueError: if the text is too short for one window.
    """
    n = (len(ids) - 1) // length
    if n < 1:
        raise ValueError(f"A text of {len(ids)} characters is too short for windows of "
                         f"{length} characters plus one target.")
    x = ids[:n * length].reshape(n, length)
    y = ids[1:n * length + 1].reshape(n, length)
    return x, y


def unigram_bits_per_char(train_ids, targets, vocab_size):
    """Bits per character of a unigram model on `targets`.

    The model is the character frequencies of `train_ids` with add-one (Laplace) smoothing,
    `p(c) = (count(c) + 1) / (N + V)`, so that the OOV id and any character unseen in training
    get a small, non-zero probability, as the LSTM's softmax gives them.

    Args:
        train_ids: `int64` array `(N,)`, the training text's ids.
        targets: int array of any shape, the ids to score.
        vocab_size: int, V.

    Returns:
        float, `-mean(log2 p(targets))`.
    """
    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0
    log2_p = np.log2(counts / counts.sum())
    return float(-np.mean(log2_p[np.asarray(targets).ravel()]))


def build_model(vocab_size, embedding_dim, units, seed, batch_size=None, stateful=False):
    """Embedding -> LSTM over every timestep -> softmax over the next character.

    Args:
        vocab_size: int, V.
        embedding_dim: int, size of each character's vector.
        units: int, H, the LSTM's units.
        seed: int, seeds the LSTM's initializers.
        batch_size: int or None; a stateful model needs it.
        stateful: bool, whether the LSTM carries its state from one call to the next.

    Returns:
        An uncompiled `Sequential` taking `(B, T)` ids (any T) and returning `(B, T, V)`
        `float32` next-character probabilities.
    """
    return Sequential([
        Input((None,), batch_size=batch_size),
        Embedding(vocab_size, embedding_dim),
        LSTM(units, return_sequences=True, stateful=stateful, seed=seed),
        Dense(vocab_size, activation="softmax"),
    ])


def sample(sampler, vocab, prompt, length, temperature, rng):
    """Continues `prompt` by `length` characters drawn one at a time.

    Args:
        sampler: a model from `build_model(..., batch_size=1, stateful=True)`.
        vocab: the `Vocabulary`.
        prompt: str, at least one character.
        length: int, number of characters to draw.
        temperature: float > 0; the next character is drawn from `p ** (1 / temperature)`,
            renormalised, so below 1 the text is more conservative, above 1 more random.
        rng: `np.random.Generator`.

    Returns:
        str, the prompt followed by the drawn characters.

    Raises:
        ValueError: for an empty `prompt` or a `temperature` that is not > 0.
    """
    if not prompt:
        raise ValueError("Argument `prompt` must hold at least one character, received ''.")
    if not temperature > 0:
        raise ValueError(f"Argument `temperature` must be > 0, received {temperature!r}.")
    sampler.reset_states()
    probs = sampler.predict(vocab.encode(prompt)[None, :], verbose=0)[0, -1]
    drawn = []
    for _ in range(length):
        weights = probs.astype(np.float64) ** (1.0 / temperature)
        weights[OOV_ID] = 0.0
        next_id = rng.choice(vocab.size, p=weights / weights.sum())
        drawn.append(next_id)
        # The stateful LSTM carries its state over from the previous call.
        probs = sampler.predict(np.array([[next_id]]), verbose=0)[0, -1]
    return prompt + vocab.decode(drawn)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small model on slices of the texts, for a smoke run")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--units", type=int, help="LSTM units")
    parser.add_argument("--embedding-dim", type=int)
    parser.add_argument("--seq-len", type=int, help="characters per training window")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--train-chars", type=int,
                        help="train on the first N characters of Pride and Prejudice")
    parser.add_argument("--eval-chars", type=int,
                        help="evaluate on the first N characters of Persuasion")
    parser.add_argument("--eval-len", type=int, help="characters per evaluation window")
    parser.add_argument("--sample-len", type=int, help="characters sampled per temperature")
    parser.add_argument("--validation-split", type=float,
                        help="fraction of the training windows (the last ones) held out")
    parser.add_argument("--patience", type=int,
                        help="epochs without a better validation loss before stopping")
    parser.add_argument("--prompt", default="Elizabeth")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=".", help="where the model is written")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.prompt or not all(t > 0 for t in args.temperatures):
        parser.error(f"--prompt must be non-empty and --temperatures > 0, received "
                     f"{args.prompt!r} and {args.temperatures}.")
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    pylstm.utils.set_random_seed(args.seed)
    train_text = load_austen("pride_and_prejudice")[:args.train_chars]
    eval_text = load_austen("persuasion")[:args.eval_chars]
    vocab = Vocabulary(train_text)
    train_ids, eval_ids = vocab.encode(train_text), vocab.encode(eval_text)
    x_train, y_train = make_windows(train_ids, args.seq_len)
    x_eval, y_eval = make_windows(eval_ids, args.eval_len)
    print(f"Pride and Prejudice: {len(train_text):,} characters, {vocab.size - 1} distinct "
          f"(+1 id for unknown ones) -> {len(x_train):,} training windows of {args.seq_len}.")
    print(f"Persuasion: {len(eval_text):,} characters ({int(np.sum(eval_ids == OOV_ID))} unknown "
          f"to the vocabulary) -> {len(x_eval):,} evaluation windows of {args.eval_len}.")

    model = build_model(vocab.size, args.embedding_dim, args.units, args.seed)
    model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=args.learning_rate,
                                                   clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    start = time.perf_counter()
    stopping = EarlyStopping(monitor="val_loss", patience=args.patience,
                             restore_best_weights=True)
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_split=args.validation_split, callbacks=[stopping],
                        verbose=args.verbose)
    val_losses = history.history["val_loss"]
    best = int(np.argmin(val_losses))
    print(f"Trained {len(val_losses)} epochs in {time.perf_counter() - start:.1f} s; kept the "
          f"weights of epoch {best + 1} (validation loss {val_losses[best]:.4f}, "
          f"{val_losses[best] / math.log(2):.3f} bits per character).")

    loss, accuracy = model.evaluate(x_eval, y_eval, batch_size=args.batch_size, verbose=0)
    lstm_bpc = loss / math.log(2)
    unigram_bpc = unigram_bits_per_char(train_ids, y_eval, vocab.size)
    print(f"Bits per character on Persuasion ({y_eval.size:,} characters):")
    print(f"  LSTM     {lstm_bpc:6.3f}  (next-character accuracy {accuracy:.1%})")
    print(f"  unigram  {unigram_bpc:6.3f}  (Pride and Prejudice's character frequencies)")

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "austen_lstm.pylstm")
    model.save(path)
    print(f"Saved {path}.")

    sampler = build_model(vocab.size, args.embedding_dim, args.units, args.seed, batch_size=1,
                          stateful=True)
    sampler.set_weights(model.get_weights())
    rng = np.random.default_rng(args.seed)
    for temperature in args.temperatures:
        text = sample(sampler, vocab, args.prompt, args.sample_len, temperature, rng)
        print(f"\nSample at temperature {temperature}:\n{text}\n")

    if not lstm_bpc < unigram_bpc:
        print("The LSTM did not beat the unigram baseline.", file=sys.stderr)
        return 1
    print(f"The LSTM beats the unigram baseline by {unigram_bpc - lstm_bpc:.2f} bits per "
          f"character.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
