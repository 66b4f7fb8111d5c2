"""``farnet benchmark`` at a tiny size: every path's row and the ratios are printed and finite (no timings checked)."""
from __future__ import annotations

import json
import math

from farnet_lite.cli import main


def test_benchmark_prints_rows_and_finite_ratios(tmp_path, capsys):
    assert main(["benchmark", "--device", "cpu", "--input-size", "64", "64", "--large-input-size", "0", "0",
                 "--predict-size", "64", "64", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                 "--system", "fpn", "--original-size", "48", "40", "--baseline-workers", "0", "--no-isolate",
                 "--json", str(tmp_path / "bench.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split("  ")[0] for line in lines]
    assert {"today", "fast", "official-style", "fast, batch 2"} <= set(names)
    assert "train 64x64 s/img" in lines[1] and "eval 64x64 s/img" in lines[1] and "predict 64x64 s/img" in lines[1]
    figures = json.loads((tmp_path / "bench.json").read_text())
    rows = figures["paths"]
    assert [rows[p]["batch"] for p in ("today", "fast", "official-style", "fast, batch 2")] == [1, 1, 1, 2]
    assert rows["today"]["precision"] == "fp32" and rows["official-style"]["precision"] == "fp32"
    for name in ("today", "fast", "fast, batch 2"):
        values = [*rows[name]["train_s_per_image"].values(), rows[name]["eval_s_per_image"],
                  rows[name]["predict_s_per_image"]]
        assert len(values) == 3 and all(math.isfinite(v) and v > 0 for v in values), name
    for ratio in ("today/fast", "official-style/fast"):
        assert any(line.startswith("x " + ratio) for line in lines)
        shown = {k: v for k, v in figures["ratios"][ratio].items() if not k.startswith("predict")}
        assert len(shown) == 2 and all(math.isfinite(v) and v > 0 for v in shown.values()), ratio
    assert math.isfinite(figures["ratios"]["today/fast"]["predict 64x64"])
