"""The encoder-decoder example (`python -m pylstm.examples.seq2seq`): its data, its models and a
quick run as a user runs it."""

import re
import subprocess
import sys

import numpy as np
import pytest

from pylstm.examples import seq2seq


def test_typo_makes_one_edit_that_changes_the_word():
    rng = np.random.default_rng(0)
    kinds = set()
    for word in ["the", "an", "elizabeth", "aa", "letter"] * 40:
        typed = seq2seq.typo(word, rng)
        assert typed != word and abs(len(typed) - len(word)) <= 1
        if len(typed) < len(word):
            kinds.add("deleted")
        elif len(typed) > len(word):
            kinds.add("inserted")
        elif sorted(typed) == sorted(word):
            kinds.add("swapped")
        else:
            kinds.add("replaced")
        if len(typed) == len(word):   # replaced or swapped: at most two positions differ
            assert sum(a != b for a, b in zip(typed, word)) <= 2
    assert kinds == {"deleted", "inserted", "swapped", "replaced"}


def test_words_encode_and_decode_back():
    words = ["to", "persuasion", "a"]
    ids = seq2seq.encode(words, 12, start=True, end=True)
    assert ids.dtype == np.int32 and ids.shape == (3, 12)
    assert ids[0, :4].tolist() == [seq2seq.START, seq2seq.FIRST_LETTER + 19,
                                   seq2seq.FIRST_LETTER + 14, seq2seq.END]
    assert (ids[0, 4:] == seq2seq.PAD).all()
    assert [seq2seq.decode(row[1:]) for row in ids] == words
    assert seq2seq.words_of("Mr. Darcy's  x\nWALKED-in", 6) == ["mr", "darcy", "walked", "in"]


def test_inference_models_share_the_training_models_weights():
    model, encoder, decoder = seq2seq.build_models(4, 6, seed=0)
    assert {id(v) for v in encoder.weights + decoder.weights} <= {id(v) for v in model.weights}
    typed = seq2seq.encode(["hte", "adn"], 5)
    target = seq2seq.encode(["the", "and"], 4, start=True)
    probs = model.predict([typed, target])
    # the decoder run step by step from the encoder's states gives the training model's output
    h, c = encoder.predict(typed)
    for t in range(target.shape[1]):
        step, h, c = decoder.predict([target[:, t:t + 1], h, c])
        np.testing.assert_allclose(step[:, 0], probs[:, t], rtol=1e-5, atol=1e-6)
    assert len(seq2seq.correct(encoder, decoder, typed, max_len=4)) == 2


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Runs `python -m pylstm.examples.seq2seq --quick` as a user runs it, from an empty
    folder."""
    proc = subprocess.run([sys.executable, "-m", "pylstm.examples.seq2seq", "--quick",
                           "--verbose", "0"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path_factory.mktemp("seq2seq"))
    return proc.returncode, proc.stdout + proc.stderr


def test_quick_run_beats_leaving_words_as_typed(quick_run):
    status, out = quick_run
    assert status == 0, out
    model = float(re.search(r"encoder-decoder\s+([\d.]+)%", out).group(1))
    baseline = float(re.search(r"left as typed\s+([\d.]+)%", out).group(1))
    assert model > baseline + 5, out
    assert re.search(r"^\s+\w+ -> \w* +\w+", out, re.MULTILINE), out
