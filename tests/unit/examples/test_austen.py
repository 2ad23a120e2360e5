"""The Austen texts (`pylstm.datasets.load_austen`) and the character-level language model
example (`python -m pylstm.examples.austen`)."""

import gzip
import hashlib
import math
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from pylstm import datasets
from pylstm.datasets import load_austen
from pylstm.examples import austen
from pylstm.models import load_model

# SHA-256 of the texts as extracted from Debian's r-cran-janeaustenr 1.0.0-1 (shared data README).
EXTRACTED_SHA256 = {
    "pride_and_prejudice": "dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d",
    "persuasion": "8061549557aebd2fd6e353d18d9197cb707029112bd52d4d8b174583a925848a",
}


@pytest.fixture(scope="module")
def texts():
    return {title: load_austen(title) for title in EXTRACTED_SHA256}


# The loader -------------------------------------------------------------------------------

def test_texts_are_the_extracted_files(texts):
    assert datasets.AUSTEN_SHA256 == EXTRACTED_SHA256
    for title, text in texts.items():
        assert hashlib.sha256(text.encode("ascii")).hexdigest() == EXTRACTED_SHA256[title]


@pytest.mark.parametrize("title, n_chars, n_lines, first_line, n_chapters", [
    ("pride_and_prejudice", 684_768, 13_030, "PRIDE AND PREJUDICE", 61),
    ("persuasion", 466_854, 8_328, "Persuasion", 24),
])
def test_text_shapes(texts, title, n_chars, n_lines, first_line, n_chapters):
    text = texts[title]
    assert len(text) == n_chars
    assert text.isascii() and "\t" not in text
    lines = text.splitlines()
    assert len(lines) == n_lines and text.endswith("\n")
    assert lines[0] == first_line
    assert len(set(text)) == 75
    assert sum(bool(re.fullmatch(r"Chapter \d+", line)) for line in lines) == n_chapters
    assert "Gutenberg" not in text


def test_character_sets_differ_as_documented(texts):
    pride, persuasion = set(texts["pride_and_prejudice"]), set(texts["persuasion"])
    assert persuasion - pride == {"&", "Q"}
    assert pride - persuasion == {"*", "_"}


def test_unknown_title_is_a_value_error():
    expected = r"`title` must be one of \['persuasion', 'pride_and_prejudice'\], received 'emma'"
    with pytest.raises(ValueError, match=expected):
        load_austen("emma")


@pytest.mark.parametrize("title", [None, 1, b"persuasion"])
def test_non_str_title_is_a_type_error(title):
    with pytest.raises(TypeError, match="`title` must be a str"):
        load_austen(title)


def test_damaged_text_is_detected(monkeypatch):
    damaged = load_austen("persuasion").replace("Anne", "Anna", 1).encode("ascii")
    monkeypatch.setattr(datasets, "_read_bytes", lambda filename: gzip.compress(damaged))
    with pytest.raises(ValueError, match="austen_persuasion.txt.gz.*damaged"):
        load_austen("persuasion")


# The example's pieces ---------------------------------------------------------------------

def test_vocabulary_round_trip_and_oov(texts):
    vocab = austen.Vocabulary(texts["pride_and_prejudice"])
    assert vocab.size == 76
    ids = vocab.encode(texts["pride_and_prejudice"][:5000])
    assert ids.dtype == np.int64 and ids.min() >= 1 and ids.max() <= 75
    assert vocab.decode(ids) == texts["pride_and_prejudice"][:5000]
    np.testing.assert_array_equal(vocab.encode("Q&a"), [austen.OOV_ID, austen.OOV_ID,
                                                        vocab.encode("a")[0]])
    assert vocab.decode(vocab.encode("Q&a")) == "\ufffd\ufffda"


def test_make_windows_targets_are_the_next_characters():
    ids = np.arange(23)
    x, y = austen.make_windows(ids, 5)
    assert x.shape == y.shape == (4, 5)
    np.testing.assert_array_equal(x.ravel(), np.arange(20))
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match="too short"):
        austen.make_windows(np.arange(5), 5)


def test_unigram_bits_per_char_is_the_entropy_on_its_own_text(texts):
    vocab = austen.Vocabulary(texts["pride_and_prejudice"])
    ids = vocab.encode(texts["pride_and_prejudice"])
    counts = np.bincount(ids, minlength=vocab.size)
    entropy = stats.entropy(counts, base=2)
    # Add-one smoothing raises the cross-entropy by less than log2(1 + V / N) bits.
    assert austen.unigram_bits_per_char(ids, ids, vocab.size) == pytest.approx(entropy, abs=1e-3)
    # An id never seen in training costs log2(N + V) bits, not infinity.
    assert austen.unigram_bits_per_char(ids, [austen.OOV_ID], vocab.size) == pytest.approx(
        math.log2(len(ids) + vocab.size))


# The example, end to end -------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Runs `python -m pylstm.examples.austen --quick` as a user runs it (from an empty folder,
    so the source tree cannot shadow an installed package)."""
    out_dir = tmp_path_factory.mktemp("austen")
    # One BLAS thread: the LSTM's per-timestep products are small, and on a 2-core machine busy
    # with other jobs OpenBLAS's two threads wait on each other (there, 1.5 s became 90 s).
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pylstm.examples.austen", "--quick", "--verbose", "0",
         "--output-dir", str(out_dir)],
        cwd=out_dir, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr, out_dir


def _reported_bpc(out, name):
    return float(re.search(rf"^  {name} +([0-9.]+)", out, re.MULTILINE).group(1))


def test_quick_run_beats_the_unigram_baseline_on_held_out_text(quick_run, texts):
    status, out, out_dir = quick_run
    assert status == 0, out
    quick = austen.QUICK
    train = texts["pride_and_prejudice"][:quick["train_chars"]]
    held_out = texts["persuasion"][:quick["eval_chars"]]
    # Score the same characters the example scores: the targets of whole evaluation windows.
    n_windows = (len(held_out) - 1) // quick["eval_len"]
    x_text = held_out[:n_windows * quick["eval_len"]]
    y_text = held_out[1:n_windows * quick["eval_len"] + 1]

    # The baseline, recomputed with Counter: add-one smoothed training frequencies, and every
    # character unseen in training shares the one OOV count.
    counts = Counter(train)
    vocab_size = len(counts) + 1
    total = len(train) + vocab_size
    unigram = -np.mean([math.log2((counts[c] + 1) / total) for c in y_text])
    assert _reported_bpc(out, "unigram") == pytest.approx(unigram, abs=1e-3)

    # The LSTM, recomputed from the saved model's predicted probabilities.
    model = load_model(out_dir / "austen_lstm.pylstm")
    vocab = austen.Vocabulary(train)
    x = vocab.encode(x_text).reshape(n_windows, quick["eval_len"])
    y = vocab.encode(y_text).reshape(n_windows, quick["eval_len"])
    probs = model.predict(x)
    assert probs.shape == (n_windows, quick["eval_len"], vocab_size)
    p_target = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
    lstm = float(-np.mean(np.log2(np.clip(p_target, 1e-7, 1.0))))
    assert _reported_bpc(out, "LSTM") == pytest.approx(lstm, abs=2e-3)
    assert lstm < unigram - 0.5


def test_quick_run_prints_samples(quick_run):
    _, out, _ = quick_run
    for temperature in ("0.5", "1.0"):
        assert f"Sample at temperature {temperature}:\nElizabeth" in out


def test_stateful_sampler_continues_like_the_trained_model(quick_run, texts):
    _, _, out_dir = quick_run
    model = load_model(out_dir / "austen_lstm.pylstm")
    quick = austen.QUICK
    vocab = austen.Vocabulary(texts["pride_and_prejudice"][:quick["train_chars"]])
    sampler = austen.build_model(vocab.size, quick["embedding_dim"], quick["units"], seed=0,
                                 batch_size=1, stateful=True)
    sampler.set_weights(model.get_weights())
    first = austen.sample(sampler, vocab, "Mr. Darcy", 60, 0.8, np.random.default_rng(3))
    again = austen.sample(sampler, vocab, "Mr. Darcy", 60, 0.8, np.random.default_rng(3))
    assert first == again   # reset_states at the start, and a seeded generator
    assert first.startswith("Mr. Darcy") and len(first) == len("Mr. Darcy") + 60
    assert austen.OOV_CHAR not in first
    # Fed one character per call, the stateful twin ends where the trained model, run over the
    # whole text at once, ends.
    ids = vocab.encode(first)
    sampler.reset_states()
    for i in ids:
        step = sampler.predict(np.array([[i]]))[0, -1]
    np.testing.assert_allclose(step, model.predict(ids[None, :])[0, -1], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="`temperature` must be > 0, received 0"):
        austen.sample(sampler, vocab, "Mr. Darcy", 5, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="`prompt` must hold at least one character"):
        austen.sample(sampler, vocab, "", 5, 1.0, np.random.default_rng(0))


def test_bad_command_line_is_rejected_before_training(capsys):
    with pytest.raises(SystemExit):
        austen.main(["--quick", "--temperatures", "0.5", "-1"])
    assert "--temperatures > 0" in capsys.readouterr().err
