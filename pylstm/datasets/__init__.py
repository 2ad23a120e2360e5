"""Real sequence data shipped inside the package, with provenance (see `README.md` here).

Every loader reads a file installed as package data through `importlib.resources`, so it works
offline and from a wheel. No pandas: values come back as NumPy arrays.
"""

import csv
import gzip
import hashlib
from collections import namedtuple
from importlib import resources

import numpy as np

SUNSPOTS_FILENAME = "sunspots_monthly.csv"
# SHA-256 of the file as copied from statsmodels 0.15.0 (see README.md); tests verify it.
SUNSPOTS_SHA256 = "688ff5cfe591d05a73a05154684ce6a204321b2796b84f089397fa5dfaa06675"

Sunspots = namedtuple("Sunspots", ["data", "years", "months"])
Sunspots.__doc__ = """Monthly mean sunspot numbers, 1749-01 to 2009-06 (3126 consecutive months).

Attributes:
    data: `float64` array of shape `(3126,)`, the monthly mean (international, pre-2015 "v1"
        scale) sunspot number. Dimensionless count index, one decimal, range 0.0 to 253.8.
    years: `int64` array of shape `(3126,)`, calendar year of each value (1749 to 2009).
    months: `int64` array of shape `(3126,)`, calendar month of each value (1 to 12).

Example:

>>> from pylstm.datasets import Sunspots, load_sunspots
>>> sunspots = load_sunspots()
>>> isinstance(sunspots, Sunspots), sunspots._fields
(True, ('data', 'years', 'months'))
>>> int(sunspots.years[-1]), int(sunspots.months[-1]), float(sunspots.data.max())
(2009, 6, 253.8)
"""

_SUNSPOTS_DTYPE = np.dtype([("year", np.int64), ("month", np.int64), ("sunspot_number", np.float64)])


def _read_bytes(filename):
    return resources.files(__name__).joinpath(filename).read_bytes()


def sha256(filename):
    """Returns the hex SHA-256 of a data file shipped in `pylstm.datasets`, to check an
    installation against the digests recorded here (`SUNSPOTS_SHA256`).

    Args:
        filename: str, the file's name in the package, e.g. `"sunspots_monthly.csv"`.

    Returns:
        str, 64 lowercase hex digits.

    Raises:
        FileNotFoundError: for a file that `pylstm.datasets` does not ship.

    Example:

    >>> from pylstm.datasets import SUNSPOTS_FILENAME, SUNSPOTS_SHA256, sha256
    >>> sha256(SUNSPOTS_FILENAME) == SUNSPOTS_SHA256
    True
    """
    return hashlib.sha256(_read_bytes(filename)).hexdigest()


def load_sunspots(as_frame=False):
    """Loads the monthly mean sunspot numbers (NOAA NGDC, via statsmodels 0.15.0; public domain).

    The series is 3126 consecutive months with no gaps. February 1824 was interpolated by the
    source from January and March 1824; values after December 2008 are preliminary. The scale
    is the old (version 1) International Sunspot Number: do not mix it with current SILSO (v2)
    values. A common task is to forecast the next month from the previous 132 (one ~11-year
    solar cycle), scaled by `/100` or `log1p`, holding out the last ~10 % in time order.

    Args:
        as_frame: bool. If False (default), returns a `Sunspots` namedtuple of three aligned
            arrays. If True, returns the table as one NumPy structured array of shape `(3126,)`
            with fields `year` (`int64`), `month` (`int64`) and `sunspot_number` (`float64`),
            one row per month, as in the CSV file (pylstm does not depend on pandas).

    Returns:
        `Sunspots(data, years, months)`: `data` is `float64` of shape `(3126,)`, `years` and
        `months` are `int64` of shape `(3126,)`; or the structured array when `as_frame=True`.

    Example:

    >>> from pylstm.datasets import load_sunspots
    >>> sunspots = load_sunspots()
    >>> sunspots.data.shape, sunspots.data.dtype
    ((3126,), dtype('float64'))
    >>> int(sunspots.years[0]), int(sunspots.months[0]), float(sunspots.data[0])
    (1749, 1, 58.0)
    """
    text = _read_bytes(SUNSPOTS_FILENAME).decode("ascii").splitlines()
    reader = csv.reader(text)
    header = next(reader)
    if header != ["year", "month", "sunspot_number"]:
        raise ValueError(f"Unexpected header in {SUNSPOTS_FILENAME}: {header}.")
    rows = [(int(year), int(month), float(value)) for year, month, value in reader]
    table = np.array(rows, dtype=_SUNSPOTS_DTYPE)
    if as_frame:
        return table
    return Sunspots(
        data=table["sunspot_number"].copy(),
        years=table["year"].copy(),
        months=table["month"].copy(),
    )


AUSTEN_FILENAMES = {
    "pride_and_prejudice": "austen_pride_and_prejudice.txt.gz",
    "persuasion": "austen_persuasion.txt.gz",
}
# SHA-256 of the decompressed text as copied from janeaustenr 1.0.0 (see README.md): the gzip
# container may differ between zlib versions, the text must not.
AUSTEN_SHA256 = {
    "pride_and_prejudice": "dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d",
    "persuasion": "8061549557aebd2fd6e353d18d9197cb707029112bd52d4d8b174583a925848a",
}


def load_austen(title):
    """Loads the full text of a Jane Austen novel (Project Gutenberg via janeaustenr 1.0.0).

    Both novels are public domain; the text has no Project Gutenberg header or footer, starts
    at the title and ends with the novel's last line plus a newline. Lines are at most about
    70 characters, some are blank, and `_underscores_` mark italics. Every character is ASCII:

    - `"pride_and_prejudice"` (1813): 684,768 characters, 13,030 lines, 75 distinct characters.
    - `"persuasion"` (1818): 466,854 characters, 8,328 lines, 75 distinct characters; it has
      `&` and `Q`, which Pride and Prejudice lacks, and lacks `*` and `_`.

    A common task is a character-level language model trained on one novel and measured in
    bits per character on the other (see `python -m pylstm.examples.austen`).

    Args:
        title: str, `"pride_and_prejudice"` or `"persuasion"`.

    Returns:
        str, the whole novel; every line, the last included, ends with a newline.

    Raises:
        TypeError: if `title` is not a str.
        ValueError: for an unknown `title`, or if the decompressed text does not have the
            SHA-256 recorded in `AUSTEN_SHA256` (a damaged installation).

    Example:

    >>> from pylstm.datasets import load_austen
    >>> text = load_austen("pride_and_prejudice")
    >>> len(text), text.splitlines()[0]
    (684768, 'PRIDE AND PREJUDICE')
    """
    if not isinstance(title, str):
        raise TypeError(f"Argument `title` must be a str, received {type(title).__name__} "
                        f"{title!r}.")
    if title not in AUSTEN_FILENAMES:
        raise ValueError(f"Argument `title` must be one of {sorted(AUSTEN_FILENAMES)}, "
                         f"received {title!r}.")
    filename = AUSTEN_FILENAMES[title]
    data = gzip.decompress(_read_bytes(filename))
    digest = hashlib.sha256(data).hexdigest()
    if digest != AUSTEN_SHA256[title]:
        raise ValueError(f"The text in {filename} has SHA-256 {digest}, expected "
                         f"{AUSTEN_SHA256[title]}: the package data is damaged; reinstall pylstm.")
    return data.decode("ascii")


__all__ = ["Sunspots", "load_sunspots", "sha256", "SUNSPOTS_SHA256", "load_austen",
           "AUSTEN_FILENAMES", "AUSTEN_SHA256"]
