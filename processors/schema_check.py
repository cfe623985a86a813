"""A compiled fast path for the small JSON Schema subset Ripple's event schemas use.

``jsonschema`` costs ~0.3 ms per event, a ceiling of ~3k events/s per core before any real
work.  :func:`compile_schema` turns a flat object schema into a plain Python predicate that
answers "valid?" in a few microseconds.  It is a *pre-check*: when it says no, the caller
asks ``jsonschema`` for the precise message, so error texts stay the standard ones.

Only the keywords below are understood; :func:`compile_schema` raises on anything else, so a
schema edit can never silently weaken validation.

Examples
--------
>>> check = compile_schema({"type": "object", "required": ["a"], "properties": {
...     "a": {"type": "string", "minLength": 1, "maxLength": 3}, "n": {"type": "number", "minimum": 0}}})
>>> check({"a": "x"}), check({"a": ""}), check({"a": "x", "n": -1}), check({"a": "x", "n": True})
(True, False, False, False)
"""

from __future__ import annotations

from typing import Callable

OBJECT_KEYWORDS = {"$schema", "$id", "title", "description", "type", "properties", "required", "additionalProperties"}
PROPERTY_KEYWORDS = {"type", "const", "minLength", "maxLength", "minimum", "description"}
SUPPORTED_TYPES = {"string", "number", "integer", "null", "boolean"}


def _is_type(value: object, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):  # JSON booleans are not numbers
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, (int, float))  # number


def _property_check(spec: dict) -> Callable[[object], bool]:
    unknown = set(spec) - PROPERTY_KEYWORDS
    if unknown:
        raise ValueError(f"unsupported keywords {sorted(unknown)} in {spec}")
    types = spec.get("type")
    types = [types] if isinstance(types, str) else types
    if types is not None and set(types) - SUPPORTED_TYPES:
        raise ValueError(f"unsupported type in {spec}")
    has_const, const = "const" in spec, spec.get("const")
    min_len, max_len, minimum = spec.get("minLength"), spec.get("maxLength"), spec.get("minimum")

    # the shapes Ripple's schemas use, as one expression each (every event runs them)
    if types == ["string"] and not has_const and minimum is None:
        lo, hi = min_len or 0, max_len

        def check_string(value: object) -> bool:
            return isinstance(value, str) and lo <= len(value) and (hi is None or len(value) <= hi)

        return check_string
    if types == ["number"] and not has_const and min_len is None and max_len is None:

        def check_number(value: object) -> bool:  # ``not v < minimum``: what the general check does for NaN
            return isinstance(value, (int, float)) and not isinstance(value, bool) and (
                minimum is None or not value < minimum)

        return check_number
    numeric_const = isinstance(const, (int, float)) and not isinstance(const, bool)
    if types is None and has_const and numeric_const and min_len is None and max_len is None and minimum is None:

        def check_const(value: object) -> bool:  # a numeric const: equal by value, never a boolean
            return value == const and not isinstance(value, bool)

        return check_const

    def check(value: object) -> bool:
        # JSON Schema const compares numbers by value (1 == 1.0) but never booleans with numbers
        if has_const and not (value == const and isinstance(value, bool) == isinstance(const, bool)):
            return False
        if types is not None and not any(_is_type(value, t) for t in types):
            return False
        if isinstance(value, str):
            # JSON Schema counts code points, like len(); lone surrogates count as one each
            if (min_len is not None and len(value) < min_len) or (max_len is not None and len(value) > max_len):
                return False
        elif minimum is not None and _is_type(value, "number") and value < minimum:
            return False
        return True

    return check


def compile_schema(schema: dict) -> Callable[[object], bool]:
    """A predicate equivalent to validating against ``schema`` (a flat object schema)."""
    unknown = set(schema) - OBJECT_KEYWORDS
    if unknown or schema.get("type") != "object" or schema.get("additionalProperties", True) is not True:
        raise ValueError(f"unsupported object schema keywords: {sorted(unknown) or schema.get('type')}")
    required = tuple(schema.get("required", ()))
    props = {name: _property_check(spec) for name, spec in schema.get("properties", {}).items()}

    def check(doc: object) -> bool:
        if not isinstance(doc, dict):
            return False
        for name in required:
            if name not in doc:
                return False
        for name, ok in props.items():
            if name in doc and not ok(doc[name]):
                return False
        return True

    return check
