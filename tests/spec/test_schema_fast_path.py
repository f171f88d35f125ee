"""The compiled fast check (fastjsonschema, draft 7) must never pass a document that jsonschema
(draft 2020-12, the reference) rejects: when it passes, nothing else looks at the document."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deployer.spec.schema import _validator, passes_fast_check, schema

from ..hostile.strategies import DEPLOYMENT_SHAPED as _DEPLOYMENT
from ..hostile.strategies import NEAR_VALID as _NEAR_VALID
from ..hostile.strategies import VALID as _VALID

# Values near the schema's edges, in every slot: both verdicts are common, so disagreements show.
_EDGE = {
    ("name",): ["chess", "a", "A", "-a", "a" * 63, "a" * 64, "a_b", 5, ""],
    ("gpu",): [
        "A10G",
        "a10g",
        "H100:2",
        "H100:0",
        "T4:9",
        {"type": "L4"},
        {"type": "L4", "count": 2.0},
        {"type": "L4", "count": True},
        {"count": 2},
        {"type": "L4", "x": 1},
    ],
    ("vllm", "version"): ["0.11.2", "0.32.0", "1", "0.10", 0.1, "latest", ""],
    ("vllm", "args"): [
        {},
        {"max-model-len": 4096},
        {"--x": 1},
        {"A": 1},
        {"x": None},
        {"x": [1, "a"]},
        {"x": {"k": 1}},
        {"x": 1.5},
    ],
    ("auth",): [
        "none",
        "None",
        {"proxy": True},
        {"proxy": False},
        {"api_key": {"secret": "k"}},
        {"api_key": {}},
        {},
        {"api_key": {"secret": "k"}, "proxy": True},
    ],
    ("adapters",): [
        [],
        [{"name": "a", "repo": "o/a"}],
        [{"name": "a", "path": "x"}],
        [{"name": "a", "repo": "o/a", "path": "x"}],
        [{"name": "a", "revision": "v"}],
        [{"name": "a", "repo": "o/a", "revision": "v"}],
        [{"repo": "o/a"}],
        [{"name": "a", "repo": "bad repo"}],
    ],
    ("base_model",): [
        {"repo": "o/m"},
        {"path": "m", "served_name": "m"},
        {"path": "m"},
        {"repo": "o/m", "revision": "r"},
        {"revision": "r"},
        {},
        {"repo": "o/m", "served_name": "has space"},
    ],
    ("scaling",): [
        {},
        {"min_containers": 0},
        {"min_containers": -1},
        {"min_containers": 100},
        {"min_containers": 101},
        {"scaledown_window": 1},
        {"scaledown_window": 2.0},
        {"startup_timeout": 3600},
        {"startup_timeout": 3601},
        {"max_containers": None},
        {"target_concurrent_inputs": 2},
    ],
    ("cold_start",): [
        {},
        {"prefetch": False},
        {"gpu_snapshot": True},
        {"gpu_snapshot": "yes"},
        {"other": True},
    ],
    ("image",): [
        {},
        {"python": "3.12"},
        {"python": 3.12},
        {"env": {"A": "1"}},
        {"env": {"A": 1}},
        {"pip": ["x==1"]},
        {"pip": "x"},
    ],
    ("smoke",): [
        {},
        {"prompt": "hi"},
        {"max_tokens": 0},
        {"expect": {"a": "e2e4"}},
        {"expect": {"a": "("}},
    ],
    ("secrets",): [[], ["hf"], ["hf", "hf"], ["Bad Name"], "hf"],
}


def _with(changes):
    document = json.loads(json.dumps(_VALID))
    for path, value in changes:
        target = document
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return document


_EDGY = st.lists(
    st.sampled_from(list(_EDGE)).flatmap(
        lambda path: st.tuples(st.just(path), st.sampled_from(_EDGE[path]))
    ),
    min_size=1,
    max_size=3,
).map(_with)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(_DEPLOYMENT, _NEAR_VALID, _EDGY, _EDGY))
def test_the_fast_check_passes_only_what_jsonschema_accepts(document):
    document = json.loads(
        json.dumps(document, default=str)
    )  # as YAML would hand it over: plain JSON values
    passed = passes_fast_check(document)
    event("fast check passed" if passed else "fast check failed")
    if passed:
        assert list(_validator().iter_errors(document)) == [], document


def test_the_fast_check_passes_valid_deployments():
    assert passes_fast_check(json.loads(json.dumps(_VALID)))
    assert not passes_fast_check({**_VALID, "gpu": True})
    assert not passes_fast_check(
        {**_VALID, "scaling": {"min_containers": True}}
    )  # a bool is no integer
    assert not passes_fast_check(
        {**_VALID, "adapters": [{"name": "a", "revision": "main"}]}
    )  # dependentRequired


def test_the_schema_uses_no_keyword_the_fast_check_would_ignore():
    """Draft 7 does not know these 2019-09+ keywords: fastjsonschema would skip them silently."""
    later = {
        "dependentSchemas",
        "unevaluatedProperties",
        "unevaluatedItems",
        "prefixItems",
        "$dynamicRef",
        "minContains",
        "maxContains",
    }
    used = set()

    def walk(node):
        if isinstance(node, dict):
            used.update(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema())
    assert not used & later
