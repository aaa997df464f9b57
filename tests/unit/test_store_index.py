"""langgraph.json store.index as loaded (treadle.graphs.store_index): one ConfigError line
for every bad configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from treadle.errors import ConfigError
from treadle.graphs.store_index import load_index
from treadle.store.vectors import cosine, decode, encode, rank

EMBED = Path(__file__).resolve().parents[1] / "e2e" / "semantic_graphs" / "embed.py"


@pytest.mark.parametrize(("spec", "message"), [
    ({"embed": f"{EMBED}:embed"}, '"store.index.dims" must be a whole number above 0'),
    ({"dims": "64", "embed": f"{EMBED}:embed"}, '"store.index.dims" must be a whole number'),
    ({"dims": 64}, '"store.index.embed" must be "provider:model"'),
    ({"dims": 64, "embed": f"{EMBED}:nothing"}, "has no attribute 'nothing'"),
    ({"dims": 64, "embed": "/no/such/file.py:fn"}, "no such file"),
    ({"dims": 64, "embed": "nosuchprovider:model"}, '"store.index.embed" \'nosuchprovider:model\' '
                                                    "cannot be loaded"),
    ({"dims": 64, "embed": f"{EMBED}:embed", "fields": []}, '"store.index.fields" must be'),
])
def test_a_bad_index_is_one_config_error_line(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_index(spec, "lg.json")
    assert message in str(err.value)
    assert str(err.value).startswith("lg.json: ")
    assert "\n" not in str(err.value)


def test_encryption_at_rest_refuses_an_index() -> None:
    with pytest.raises(ConfigError, match="cannot be used with encryption at rest"):
        load_index({"dims": 64, "embed": f"{EMBED}:embed"}, "lg.json", encrypted=True)


def test_module_attr_and_defaults() -> None:
    index = load_index({"dims": 3, "embed": "json:dumps"})  # a module attribute (a function)
    assert index is not None and index.fields == ("$",) and index.dims == 3
    assert load_index(None) is None


def test_vectors_round_trip_and_rank() -> None:
    assert list(decode(encode([3.0, -4.0, 0.0]))) == pytest.approx([0.6, -0.8, 0.0])
    assert list(decode(encode([0.0, 0.0]))) == [0.0, 0.0]
    assert cosine([1.0, 0.0], 1.0, [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], 1.0, [0.0, 0.0]) == 0.0
    a, b, c = object(), object(), object()
    ranked = rank([1.0, 0.0], [(a, encode([0.0, 1.0])), (a, encode([1.0, 1.0])),
                               (b, None), (c, encode([1.0, 0.0]))])
    assert [item for item, _ in ranked] == [c, a, b]
    assert ranked[1][1] == pytest.approx(2 ** -0.5) and ranked[2][1] is None
