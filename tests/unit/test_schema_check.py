"""The compiled pre-check must agree with jsonschema on every input schema, valid or not."""

import random

import pytest
from jsonschema import Draft202012Validator

from processors.events import INPUT_TOPICS, schema
from processors.schema_check import compile_schema

VALUES = [None, True, False, 0, 1, -1, 1.5, -0.5, 2**70, float("inf"), "", "x", "x" * 128, "x" * 129, "\ud800",
          "é" * 128, [], ["a"], {}, {"a": 1}, 1.0, "1"]


def random_doc(rng: random.Random, props: dict[str, list], required: list[str]) -> object:
    """Mostly well-typed documents with a sprinkle of wrong types, edge lengths and missing fields."""
    if rng.random() < 0.05:
        return rng.choice(VALUES)
    doc = {}
    for name, fitting in props.items():
        if not (name in required and rng.random() < 0.97 or rng.random() < 0.3):
            continue
        doc[name] = rng.choice(fitting) if fitting and rng.random() < 0.9 else rng.choice(VALUES)
    if rng.random() < 0.2:
        doc["extra"] = rng.choice(VALUES)
    return doc


@pytest.mark.parametrize("name", sorted(set(INPUT_TOPICS.values())) + ["recommendation", "dead_letter", "suggested_replies"])
def test_precheck_agrees_with_jsonschema(name):
    doc_schema = schema(name)
    try:
        check = compile_schema(doc_schema)
    except ValueError:
        assert name in {"recommendation", "suggested_replies"}  # nested arrays: not compiled, always jsonschema
        return
    validator = Draft202012Validator(doc_schema)
    rng = random.Random(name)
    required = doc_schema.get("required", [])
    props = {name: [v for v in VALUES + ["id-1", 1, 2.5] if Draft202012Validator(spec).is_valid(v)]
             for name, spec in doc_schema["properties"].items()}  # well-typed values per property
    valid = 0
    for _ in range(3000):
        doc = random_doc(rng, props, required)
        expected = validator.is_valid(doc)
        assert check(doc) == expected, doc
        valid += expected
    assert valid > 100  # the generator reaches the valid region too


def test_unsupported_keywords_are_refused():
    with pytest.raises(ValueError):
        compile_schema({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}})
    with pytest.raises(ValueError):
        compile_schema({"type": "object", "additionalProperties": False})


SPECS = [  # the shapes with a fast path (first four) and ones that take the general check
    {"type": "string", "minLength": 1, "maxLength": 128}, {"type": "string"}, {"type": "number", "minimum": 0},
    {"const": 1}, {"type": "number"}, {"const": "x"}, {"const": True}, {"const": 1, "type": "integer"},
    {"type": ["string", "null"], "maxLength": 1}, {"type": "integer", "minimum": 1}, {"type": "boolean"},
]


@pytest.mark.parametrize("spec", SPECS, ids=[str(s) for s in SPECS])
def test_each_property_shape_agrees_with_jsonschema(spec):
    doc_schema = {"type": "object", "properties": {"a": spec}}
    check, validator = compile_schema(doc_schema), Draft202012Validator(doc_schema)
    for value in VALUES + [float("nan"), -0.0, 0.0, 1.0, -1e-9, "é", "x" * 2]:
        assert check({"a": value}) == validator.is_valid({"a": value}), value
