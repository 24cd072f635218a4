"""--format parsing: defaults, all, repeats, comma lists and unknown names (no conversion)."""

from __future__ import annotations

import pytest

from cnnedge.errors import UsageError
from cnnedge.export.formats import FORMATS, parse_formats, triton_model_name


def _names(values):
    return [f.name for f in parse_formats(values)]


def test_default_is_onnx_and_tflite():
    assert _names(None) == ["onnx", "tflite"]
    assert _names([]) == ["onnx", "tflite"]


def test_all_repeats_commas_and_case_give_canonical_order():
    assert _names(["all"]) == [f.name for f in FORMATS]
    assert _names(["TFLITE-int8", "onnx", "onnx"]) == ["onnx", "tflite-int8"]
    assert _names(["triton,onnx-int8"]) == ["onnx-int8", "triton"]


def test_unknown_format_names_the_value_and_the_choices():
    with pytest.raises(UsageError, match=r"unknown export format 'onxx'; choose from onnx, "):
        parse_formats(["onnx", "onxx"])


def test_only_float32_formats_have_the_1e4_rule():
    rules = {f.name: f.max_abs_diff for f in FORMATS}
    assert rules == {
        "onnx": 1e-4,
        "onnx-int8": None,
        "tflite": 1e-4,
        "tflite-fp16": None,
        "tflite-int8": None,
        "triton": 1e-4,
    }


def test_triton_model_names_are_safe():
    assert triton_model_name("seed v2/x") == "seed_v2_x"
    assert triton_model_name("") == "model"
