"""``OnnxEmbedder``: the ``processors.protocols.Embedder`` adapter over onnxruntime + ``tokenizers``.

Texts are tokenised with the model's fast tokenizer (truncated to ``max_length`` tokens),
sorted by length and run in pieces padded only to the longest text of each piece, so a short
post never pays for a long one.  Pooling and L2 normalisation happen inside the ONNX graph
(see ``models.onnx_export``).

On the CPU provider a call of two or more texts is cut into pieces, a multiple of ``parallel`` (one
per usable core by default) with about the same number of tokens each, that run at once, each
single-threaded, on one session (``session.run`` is thread-safe).  Measured on 2 cores against
one run with onnxruntime's own two intra-op threads: about 15 % less CPU per sentence (no thread
synchronisation or spinning between operators) and more throughput when other threads, such as
a worker's event loop and a local broker, want the same cores.  A single text runs on one core
(3.7 ms there, against 2.2 ms on two).  On CUDA a call runs its pieces one after another.

Examples
--------
>>> resolve_providers("cpu")
['CPUExecutionProvider']
>>> resolve_providers("tpu")
Traceback (most recent call last):
...
ValueError: provider must be 'auto', 'cuda' or 'cpu', not 'tpu'
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from models.onnx_export import FORMAT_VERSION, OUTPUT, export_onnx
from models.registry import DEFAULT_MODEL, MODELS

if TYPE_CHECKING:
    from processors.calibration import Calibration
    from ripple.settings import Settings

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPU cores this process may use: its affinity mask where the OS has one, capped by a cgroup
    v2 CPU quota (a container's ``--cpus``, a Kubernetes CPU limit) rounded up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 quota to read
        pass
    return cores


class ProviderUnavailableError(RuntimeError):
    """The requested onnxruntime execution provider cannot be used on this machine."""


def resolve_providers(provider: str) -> list[str]:
    """onnxruntime provider list for ``"auto"`` (CUDA if available, else CPU), ``"cuda"`` or ``"cpu"``.

    Raises
    ------
    ProviderUnavailableError
        ``"cuda"`` was asked for but this onnxruntime build has no CUDA provider.
    """
    if provider == "cpu":
        return [CPU]
    if provider not in ("auto", "cuda"):
        raise ValueError(f"provider must be 'auto', 'cuda' or 'cpu', not {provider!r}")
    available = ort.get_available_providers()
    if CUDA in available:
        return [CUDA, CPU]
    if provider == "cuda":
        raise ProviderUnavailableError(
            f"onnx provider 'cuda' requested but this onnxruntime {ort.__version__} offers only {available}; "
            "install onnxruntime-gpu (matching your CUDA) or use provider 'auto' / 'cpu'"
        )
    return [CPU]


def ensure_model(path: Path, progress: bool = False, model: str | None = None) -> Path:
    """``path``, exporting ``model`` (a registry name; default: the one the file is named after,
    else all-MiniLM-L6-v2) there first if the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        model = model or (path.stem if path.stem in MODELS else DEFAULT_MODEL)
        export_onnx(path, progress=progress, model=model)
    return path


class OnnxEmbedder:
    """Sentence embeddings from an exported MiniLM ONNX model (satisfies ``Embedder``).

    Parameters
    ----------
    model_path
        ``.onnx`` file written by ``models.onnx_export.export_onnx`` (see ``ensure_model``).
    tokenizer_path
        ``tokenizer.json``; default: the copy stored in the model's metadata.
    provider
        ``"auto"``, ``"cuda"`` or ``"cpu"`` (see ``resolve_providers``).
    max_length
        Tokens kept per text (longer texts are truncated), at most the model's position table.
    intra_op_threads
        onnxruntime intra-op threads; ``None`` lets onnxruntime choose (one per core).  Only with
        ``parallel`` 1 (the pieces run single-threaded).
    batch_size
        Texts per ``session.run`` inside one ``embed`` call; with ``parallel`` > 1, a call is cut
        into at least ``len(texts) / batch_size`` pieces of about equal token counts.
    parallel
        CPU provider only: single-threaded pieces run at once (on ``parallel - 1`` pool threads and
        the caller).  ``None``: one per usable core, or 1 when ``intra_op_threads`` is given; 1:
        one piece at a time on onnxruntime's intra-op threads.  1 on CUDA, decided from the
        provider asked for (``"auto"`` with onnxruntime-gpu installed but no GPU gives 1).

    Attributes
    ----------
    dim : int
        Embedding width (384).
    provider : str
        The execution provider the session actually runs on.
    parallel : int
        Pieces run at once per call (1 on CUDA).
    """

    def __init__(self, model_path: Path, tokenizer_path: Path | None = None, provider: str = "auto",
                 max_length: int = 256, intra_op_threads: int | None = None, batch_size: int = 64,
                 parallel: int | None = None):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.model_path}; export it with ensure_model() "
                                    "or `ripple model export`")
        if parallel is not None and parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        if parallel is not None and parallel > 1 and intra_op_threads is not None:
            raise ValueError("intra_op_threads needs parallel=1: the pieces run single-threaded")
        self.max_length = max_length
        self.batch_size = batch_size
        wanted = resolve_providers(provider)
        if wanted[0] != CPU:
            parallel = 1
        elif parallel is None:
            parallel = 1 if intra_op_threads is not None else usable_cores()
        if parallel > 1:
            intra_op_threads = 1
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(self.model_path), sess_options=options, providers=wanted)
        self.provider = self.session.get_providers()[0]
        if provider == "cuda" and self.provider != CUDA:
            raise ProviderUnavailableError(f"onnxruntime lists CUDA but could not start it (got {self.provider}); "
                                           "check the CUDA/cuDNN libraries onnxruntime-gpu needs")
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("ripple.format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.model_path} has model format {meta.get('ripple.format_version')!r}, "
                             f"this Ripple needs {FORMAT_VERSION!r}: delete the file and export it again")
        limit = int(meta.get("ripple.max_position_embeddings", max_length))
        if not 2 <= max_length <= limit:
            raise ValueError(f"max_length must be in [2, {limit}], got {max_length}")
        self.dim = int(self.session.get_outputs()[0].shape[1])
        self.model_name = meta.get("ripple.model_name", DEFAULT_MODEL)
        self.prefix = meta.get("ripple.text_prefix", "")  # e5 was trained with "query: " before every text
        self.tokenizer = self._tokenizer(tokenizer_path, meta)
        # skips character offsets (unused here): 10-20 % less tokenising time; older tokenizers lack it
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        self.parallel = parallel
        self._pool = ThreadPoolExecutor(parallel - 1, thread_name_prefix="ripple-onnx") if parallel > 1 else None

    def _tokenizer(self, path: Path | None, meta: dict[str, str]) -> Tokenizer:
        if path is not None:
            tok = Tokenizer.from_file(str(path))
        elif "ripple.tokenizer_json" in meta:
            tok = Tokenizer.from_str(meta["ripple.tokenizer_json"])
        else:
            from models.weights import locate_weights

            tok = Tokenizer.from_file(str(locate_weights().tokenizer))
        shipped = tok.padding or {}  # tokenizer.json pads to a fixed 128: pad to the longest instead
        pad_token = shipped.get("pad_token", "[PAD]")
        pad_id = shipped.get("pad_id", tok.token_to_id(pad_token) or 0)
        tok.enable_padding(pad_id=pad_id, pad_token=pad_token)
        tok.enable_truncation(self.max_length)
        return tok

    @classmethod
    def from_settings(cls, settings: Settings, progress: bool = False) -> OnnxEmbedder:
        """Embedder for ``settings.resolved_model_path`` (exported if missing) on ``settings.onnx_provider``."""
        return cls(ensure_model(settings.resolved_model_path, progress=progress, model=settings.model),
                   provider=settings.onnx_provider,
                   batch_size=settings.embed_batch_size, parallel=settings.onnx_cpu_parallel)

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, int64 ``[n, longest]`` (truncated to ``max_length``)."""
        encodings = self._encode_batch([self.prefix + t for t in texts] if self.prefix else list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings, shape ``(len(texts), dim)``, in input order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.run_pieces(self.pieces(*self.tokenize(texts)), len(texts))

    def pieces(self, ids: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """``(rows, feed)`` per ``session.run`` for these token arrays: texts sorted by length, each
        piece cut to its longest text (right padding: the columns past it are padding only).  With
        ``parallel`` > 1 the pieces hold about equal token counts (equal work), else ``batch_size``
        texts each."""
        lengths = mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        n = len(order)
        if self.parallel == 1 or n <= 1:
            bounds = list(range(0, n, self.batch_size)) + [n]
        else:
            at_least = -(-n // self.batch_size)
            count = min(n, -(-at_least // self.parallel) * self.parallel)  # a multiple of parallel, if n allows
            sorted_lengths = lengths[order]
            middles = np.cumsum(sorted_lengths) - sorted_lengths / 2  # each text cut to the nearer side
            cuts = np.searchsorted(middles, sorted_lengths.sum() * np.arange(1, count) / count)
            bounds = [0]
            for k, cut in enumerate(cuts.tolist(), 1):  # each piece keeps at least one text
                bounds.append(min(max(cut, bounds[-1] + 1), n - (count - k)))
            bounds.append(n)
        out = []
        for start, stop in zip(bounds, bounds[1:]):
            rows = order[start:stop]
            width = int(lengths[rows].max())
            out.append((rows, {"input_ids": ids[rows, :width], "attention_mask": mask[rows, :width]}))
        return out

    def run_pieces(self, pieces: list[tuple[np.ndarray, dict[str, np.ndarray]]], n: int) -> np.ndarray:
        """Embeddings of ``n`` texts cut into ``pieces`` (see ``pieces``), in input order; with
        ``parallel`` > 1 the pieces are dealt round-robin to the pool threads and the caller."""
        out = np.empty((n, self.dim), dtype=np.float32)

        def run(share) -> None:
            for rows, feed in share:
                out[rows] = self.session.run([OUTPUT], feed)[0]

        if self._pool is None or len(pieces) == 1:
            run(pieces)
            return out
        shares = [pieces[i::self.parallel] for i in range(min(self.parallel, len(pieces)))]
        futures = [self._pool.submit(run, share) for share in shares[1:]]
        try:
            run(shares[0])
        finally:
            wait(futures)  # never return (or raise) while a pool thread still writes into ``out``
        for future in futures:
            future.result()  # re-raise a pool thread's error
        return out

    def __repr__(self) -> str:
        return (f"OnnxEmbedder({str(self.model_path)!r}, provider={self.provider!r}, dim={self.dim}, "
                f"parallel={self.parallel})")


def model_calibration(embedder: OnnxEmbedder, languages: Sequence[str] = ("en",)) -> dict[str, Calibration]:
    """Per language, the cosine calibration of ``embedder``'s model (:mod:`processors.calibration`)
    on that language's seed bank: all-MiniLM-L6-v2 in English *is* the reference scale; the rest
    is measured once and kept beside the model file (``<model>.calibration.json``, tied to the
    weights' hash).  A model packs the texts of some languages closer together than others'
    (multilingual-e5-small: random English pairs 0.82, random Chinese pairs 0.87), hence one
    calibration per language."""
    import json

    from processors.calibration import REFERENCE, Calibration, measure
    from processors.reply_texts import load_seed

    sidecar = embedder.model_path.with_suffix(".calibration.json")
    weights = embedder.session.get_modelmeta().custom_metadata_map.get("ripple.weights_sha256", "")
    try:
        doc = json.loads(sidecar.read_text())
        stored = doc["languages"] if doc.get("weights_sha256") == weights else {}
    except (OSError, ValueError, KeyError, TypeError):
        stored = {}
    out: dict[str, Calibration] = {}
    for lang in languages:
        if embedder.model_name == DEFAULT_MODEL and lang == "en":
            out[lang] = REFERENCE
            continue
        try:
            out[lang] = Calibration.from_dict(stored[lang])
        except (KeyError, ValueError, TypeError):
            seed = load_seed((lang,))
            out[lang] = measure(embedder.embed, seed.contexts, seed.replies)
            stored[lang] = out[lang].to_dict()
            tmp = sidecar.with_suffix(".tmp")
            tmp.write_text(json.dumps({"model": embedder.model_name, "weights_sha256": weights, "languages": stored}))
            os.replace(tmp, sidecar)
    return out
