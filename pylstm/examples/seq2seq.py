"""Character-level encoder-decoder that corrects typing errors in words: the functional example.

Run it with `python -m pylstm.examples.seq2seq` (add `--quick` for a smoke run of a few seconds).
It is written as Keras's character-level sequence-to-sequence tutorial writes one
(keras.io/examples/nlp/lstm_seq2seq): a training model, then an inference encoder and decoder
built from the same layers, and greedy decoding. It:

1. takes the words of Pride and Prejudice (training) and of Persuasion (evaluation), both from
   `pylstm.datasets.load_austen`, lowercased, 2 to `--max-len` letters, as they occur in the
   text (frequent words often),
2. types each word with a typing error half of the time: one letter deleted, inserted,
   replaced, or two neighbours swapped (`typo`, seeded),
3. trains the model `Model([typed, decoder_input], next_characters)`: an `Embedding` and an
   `LSTM(return_state=True)` read the typed word, a second `LSTM(return_sequences=True)` starts
   from the encoder's states (`initial_state`) and reads the word so far (teacher forcing),
   and a `Dense` softmax gives the next character; padding is masked (`mask_zero=True`),
4. decodes Persuasion's typed words greedily with the inference models, all words at once one
   character per step,
5. reports the exact-match accuracy beside the trivial baseline that leaves every word as
   typed, on all words and on those with an error, prints decoded examples, and fails if the
   model does not beat the baseline.

With the defaults the model gets 76.7 % of 5,000 of Persuasion's words right (61.8 % of those
typed with an error) against 50.2 % for leaving them as typed, after 48 s of training on a
2-core AMD EPYC (the whole run takes about a minute). Many errors cannot be undone from the
word alone ("yor" may be "your" or "or"), so no model gets every one right.
"""

import argparse
import re
import sys
import time

import numpy as np

import pylstm
from pylstm.datasets import load_austen
from pylstm.layers import LSTM, Dense, Embedding, Input
from pylstm.models import Model

PAD, START, END = 0, 1, 2              # token ids: padding (masked), start and end of a word
LETTERS = "abcdefghijklmnopqrstuvwxyz"
FIRST_LETTER = 3                       # id of "a"; "z" is FIRST_LETTER + 25
TOKENS = FIRST_LETTER + len(LETTERS)   # vocabulary size: 29

# The full run takes about a minute on 2 cores; `--quick` a few seconds. Any argument given
# explicitly overrides these.
FULL = {"epochs": 3, "units": 192, "embedding_dim": 32, "batch_size": 64, "learning_rate": 0.005,
        "train_words": 60_000, "eval_words": 5_000, "max_len": 12}
QUICK = {"epochs": 4, "units": 64, "embedding_dim": 16, "batch_size": 64, "learning_rate": 0.01,
         "train_words": 10_000, "eval_words": 300, "max_len": 8}


def words_of(text, max_len):
    """The words of `text` in order: runs of ASCII letters, lowercased, 2 to `max_len` long.

    Returns:
        list of str.
    """
    return [w for w in re.findall(r"[a-z]+", text.lower()) if 2 <= len(w) <= max_len]


def typo(word, rng):
    """`word` with one typing error: a letter deleted, a letter inserted, a letter replaced by
    another, or two neighbouring different letters swapped (drawn uniformly among those that
    change the word).

    Args:
        word: str of at least 2 lowercase letters.
        rng: `np.random.Generator`.

    Returns:
        str, different from `word`.
    """
    while True:
        kind = rng.integers(4)
        i = int(rng.integers(len(word)))
        letter = LETTERS[rng.integers(len(LETTERS))]
        if kind == 0:
            typed = word[:i] + word[i + 1:]
        elif kind == 1:
            typed = word[:i] + letter + word[i:]
        elif kind == 2:
            typed = word[:i] + letter + word[i + 1:]
        else:
            i = min(i, len(word) - 2)
            typed = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if typed != word:
            return typed


def encode(words, length, start=False, end=False):
    """Token ids of `words`, padded with `PAD` to `length`.

    Args:
        words: list of str of lowercase letters.
        length: int, columns of the result (long enough for every word and its markers).
        start, end: bool, whether each row begins with `START` / ends with `END`.

    Returns:
        `int32` array `(len(words), length)`.
    """
    ids = np.full((len(words), length), PAD, dtype=np.int32)
    for row, word in enumerate(words):
        tokens = ([START] if start else []) + [FIRST_LETTER + LETTERS.index(c) for c in word]
        tokens += [END] if end else []
        ids[row, :len(tokens)] = tokens
    return ids


def decode(ids):
    """The word of a row of ids: its letters up to the first `END` or `PAD`."""
    letters = []
    for token in ids:
        if token in (END, PAD):
            break
        if token >= FIRST_LETTER:
            letters.append(LETTERS[token - FIRST_LETTER])
    return "".join(letters)


def build_models(embedding_dim, units, seed):
    """The training model and the inference encoder and decoder, sharing their layers.

    Args:
        embedding_dim: int, size of each character's vector.
        units: int, H, the units of both LSTMs.
        seed: int, seeds the LSTMs' initializers.

    Returns:
        `(training, encoder, decoder)`:
        - training: `Model([typed (B, T_in) int32, decoder_input (B, T_out) int32],
          (B, T_out, TOKENS) float32 next-character probabilities)`;
        - encoder: `Model(typed, [h (B, H), c (B, H)])`;
        - decoder: `Model([decoder_input (B, T) int32, h (B, H), c (B, H)],
          [probabilities (B, T, TOKENS), h (B, H), c (B, H)])`.
    """
    typed = Input((None,), dtype="int32", name="typed")
    embedded = Embedding(TOKENS, embedding_dim, mask_zero=True, name="typed_embedding")(typed)
    _, state_h, state_c = LSTM(units, return_state=True, seed=seed, name="encoder")(embedded)

    decoder_input = Input((None,), dtype="int32", name="decoder_input")
    decoder_embedding = Embedding(TOKENS, embedding_dim, mask_zero=True,
                                  name="decoder_embedding")
    decoder_lstm = LSTM(units, return_sequences=True, return_state=True, seed=seed + 1,
                        name="decoder")
    next_char = Dense(TOKENS, activation="softmax", name="next_char")
    sequence, _, _ = decoder_lstm(decoder_embedding(decoder_input),
                                  initial_state=[state_h, state_c])
    training = Model([typed, decoder_input], next_char(sequence), name="typo_corrector")

    encoder = Model(typed, [state_h, state_c], name="encoder_model")
    h_in = Input((units,), name="h_in")
    c_in = Input((units,), name="c_in")
    sequence, h_out, c_out = decoder_lstm(decoder_embedding(decoder_input),
                                          initial_state=[h_in, c_in])
    decoder = Model([decoder_input, h_in, c_in], [next_char(sequence), h_out, c_out],
                    name="decoder_model")
    return training, encoder, decoder


def correct(encoder, decoder, typed_ids, max_len):
    """Greedy decoding of every row at once: starts each word with `START`, feeds back the most
    probable character, one step at a time, until every row has ended or `max_len` letters.

    Args:
        encoder, decoder: the inference models of `build_models`.
        typed_ids: `int32` array `(N, T_in)`, the typed words (`encode`).
        max_len: int, the most letters decoded.

    Returns:
        list of N str, the corrected words.
    """
    h, c = encoder.predict(typed_ids, batch_size=len(typed_ids), verbose=0)
    token = np.full((len(typed_ids), 1), START, dtype=np.int32)
    out = np.full((len(typed_ids), max_len + 1), PAD, dtype=np.int32)
    ended = np.zeros(len(typed_ids), dtype=bool)
    for step in range(max_len + 1):
        probs, h, c = decoder.predict([token, h, c], batch_size=len(typed_ids), verbose=0)
        token = np.argmax(probs[:, -1], axis=-1).astype(np.int32)[:, None]
        out[:, step] = np.where(ended, PAD, token[:, 0])
        ended |= token[:, 0] == END
        if ended.all():
            break
    return [decode(row) for row in out]


def pairs(words, count, rng):
    """`count` words drawn from `words` (so frequent words come often), each typed with an
    error half of the time: `(typed, correct, has_error)`."""
    chosen = [words[i] for i in rng.integers(len(words), size=count)]
    has_error = rng.random(count) < 0.5
    typed = [typo(w, rng) if e else w for w, e in zip(chosen, has_error)]
    return typed, chosen, has_error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small model on few words, for a smoke run")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--units", type=int, help="units of each LSTM")
    parser.add_argument("--embedding-dim", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--train-words", type=int, help="training pairs drawn")
    parser.add_argument("--eval-words", type=int, help="evaluation pairs drawn")
    parser.add_argument("--max-len", type=int, help="longest word, in letters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    pylstm.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_words = words_of(load_austen("pride_and_prejudice"), args.max_len)
    eval_words = words_of(load_austen("persuasion"), args.max_len)
    typed, target, _ = pairs(train_words, args.train_words, rng)
    eval_typed, eval_target, eval_error = pairs(eval_words, args.eval_words, rng)
    print(f"Pride and Prejudice: {len(train_words):,} words ({len(set(train_words)):,} "
          f"distinct) -> {len(typed):,} training pairs, half with a typing error.")
    print(f"Persuasion: {len(eval_words):,} words -> {len(eval_typed):,} evaluation pairs.")

    width = args.max_len + 1                  # a typed word has at most max_len + 1 letters
    x_typed = encode(typed, width)
    x_decoder = encode(target, args.max_len + 1, start=True)
    y = encode(target, args.max_len + 1, end=True)

    model, encoder, decoder = build_models(args.embedding_dim, args.units, args.seed)
    model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=args.learning_rate,
                                                   clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    start = time.perf_counter()
    model.fit([x_typed, x_decoder], y, batch_size=args.batch_size, epochs=args.epochs,
              verbose=args.verbose)
    print(f"Trained in {time.perf_counter() - start:.1f} s.")

    corrected = correct(encoder, decoder, encode(eval_typed, width), args.max_len)
    right = np.array([c == t for c, t in zip(corrected, eval_target)])
    as_typed = np.array([t == w for t, w in zip(eval_typed, eval_target)])
    print(f"Exact-match accuracy on Persuasion ({len(right):,} words, "
          f"{int(eval_error.sum()):,} with an error):")
    print(f"  encoder-decoder     {right.mean():6.1%}  (words with an error: "
          f"{right[eval_error].mean():.1%})")
    print(f"  left as typed       {as_typed.mean():6.1%}  (words with an error: 0.0%)")
    print("\nExamples (typed -> corrected, expected):")
    for i in np.flatnonzero(eval_error)[:12]:
        mark = "" if right[i] else "   x"
        print(f"  {eval_typed[i]:>14} -> {corrected[i]:<14} {eval_target[i]}{mark}")

    if not right.mean() > as_typed.mean():
        print("The encoder-decoder did not beat leaving the words as typed.", file=sys.stderr)
        return 1
    print(f"\nThe encoder-decoder beats leaving the words as typed by "
          f"{right.mean() - as_typed.mean():.1%} of the words.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
