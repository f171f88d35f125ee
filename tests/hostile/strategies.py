"""Hypothesis strategies for hostile deployments: strings that look like code, templates or
encodings, and deployment-shaped documents with such values in every slot."""

from __future__ import annotations

import copy

from hypothesis import strategies as st

# Strings that would become code if a value reached the rendered app as anything but a literal.
NASTY = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
) | st.sampled_from(
    [
        "'''",
        '"""',
        "\\",
        "\n",
        "{{ x }}",
        "{% if %}",
        "# c",
        "\"); import os; os.system('x')  #",
        "\u2028",
        "\r\n",
        "${HOME}",
        "m coding:unicode_escape",
        "-*- coding=latin-1 -*-",
    ]
)

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    NASTY,
    st.sampled_from(
        [
            "A10G",
            "H100:2",
            "0.11.2",
            "0.32.0",
            "none",
            "Qwen/Qwen3-4B-Instruct-2507",
            "../x",
            "-1",
            "1e400",
        ]
    ),
)

_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "repo",
                    "path",
                    "name",
                    "type",
                    "count",
                    "secret",
                    "api_key",
                    "proxy",
                    "max-model-len",
                    "x",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)

# Any document with a deployment's top-level keys: most are refused, which must be by findings.
DEPLOYMENT_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "name": _VALUES,
        "base_model": _VALUES,
        "adapters": _VALUES,
        "gpu": _VALUES,
        "vllm": st.fixed_dictionaries(
            {"version": _VALUES},
            optional={
                "args": st.dictionaries(st.text(min_size=1, max_size=12), _VALUES, max_size=3)
            },
        ),
        "image": _VALUES,
        "scaling": _VALUES,
        "cold_start": _VALUES,
        "auth": _VALUES,
        "secrets": _VALUES,
        "smoke": _VALUES,
    },
)

# A deployment every check accepts, and the slots NEAR_VALID changes one or two of: documents the
# checks accept often enough that render runs on many of them.
VALID = {
    "base_model": {"repo": "Qwen/Qwen3-4B-Instruct-2507"},
    "gpu": "A10G",
    "vllm": {"version": "0.11.2", "args": {"max-model-len": 4096}},
    "adapters": [{"name": "a", "repo": "org/a"}],
    "auth": "none",
    "cold_start": {"gpu_snapshot": True},
    "scaling": {"min_containers": 1},
}

_SLOTS = [
    ("base_model", "repo"),
    ("base_model", "served_name"),
    ("base_model", "revision"),
    ("gpu",),
    ("vllm", "version"),
    ("vllm", "args", "max-model-len"),
    ("vllm", "args", "enforce-eager"),
    ("adapters", 0, "name"),
    ("adapters", 0, "revision"),
    ("auth",),
    ("scaling", "min_containers"),
    ("scaling", "startup_timeout"),
    ("cold_start", "prefetch"),
    ("smoke", "expect"),
    ("image", "env"),
    ("name",),
]


def _mutated(changes):
    document = copy.deepcopy(VALID)
    for path, value in changes:
        target = document
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else target[key]
        target[path[-1]] = value
    return document


NEAR_VALID = st.lists(
    st.tuples(
        st.sampled_from(_SLOTS),
        _VALUES
        | st.sampled_from(
            [4096, True, False, "main", "qwen", "L4", "0.32.0", {"proxy": True}, {"a": "x"}]
        ),
    ),
    min_size=1,
    max_size=2,
).map(_mutated)
