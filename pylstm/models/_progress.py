"""The progress display of `fit`, `evaluate` and `predict` (Keras 3's `ProgbarLogger`), written
to stderr: with `verbose=1` a `tqdm` bar per epoch (when tqdm is installed, else the line of
`verbose=2`), with `verbose=2` one line per epoch (after an `Epoch i/N` line when there are
several epochs), as Keras prints them."""

import sys
import time

from pylstm.callbacks import Callback

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None


def _format_logs(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items())


class ProgressBar(Callback):
    """A callback that `fit`, `evaluate` and `predict` add last when `verbose` is not 0; it
    reads `params` (`verbose`, `epochs`, `steps`). Inside `fit`, validation is silent."""

    def __init__(self):
        super().__init__()
        self.verbose, self.epochs, self.target = 1, 1, None
        self._in_fit = False
        self._bar = None
        self._start = None
        self._steps = 0

    def set_params(self, params):
        super().set_params(params)
        verbose = params["verbose"]
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params["epochs"]
        self.target = params["steps"]

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        title = f"Epoch {epoch + 1}/{self.epochs}" if self.epochs > 1 else None
        if title and not self._uses_tqdm():
            print(title, file=sys.stderr, flush=True)
        self._open(title)

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._close(logs)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._open("Evaluate")

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._close(logs)

    def on_predict_begin(self, logs=None):
        self._open("Predict")

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)

    def on_predict_end(self, logs=None):
        self._close(None)

    def _uses_tqdm(self):
        return self.verbose == 1 and tqdm is not None

    def _open(self, title):
        self._start, self._steps = time.perf_counter(), 0
        if self._uses_tqdm():
            self._bar = tqdm(total=self.target, desc=title, unit="step", file=sys.stderr,
                             leave=True, dynamic_ncols=True)

    def _update(self, batch, logs):
        self._steps = batch + 1
        if self._bar is not None:
            if logs:
                self._bar.set_postfix_str(_format_logs(logs), refresh=False)
            self._bar.update(self._steps - self._bar.n)

    def _close(self, logs):
        if self._bar is not None:
            if logs:
                self._bar.set_postfix_str(_format_logs(logs), refresh=False)
            self._bar.close()
            self._bar = None
        elif self.verbose:
            elapsed = time.perf_counter() - self._start
            line = f"{self._steps}/{self._steps} - {elapsed:.0f}s"
            if self._steps:
                line += f" - {_per_step(elapsed / self._steps)}"
            print(" - ".join(filter(None, [line, _format_logs(logs)])), file=sys.stderr,
                  flush=True)


def _per_step(seconds):
    """Keras's time per step: `1s/step`, `12ms/step` or `80us/step`."""
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"
