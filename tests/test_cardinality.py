"""The CIFAR-style ResNeXt and `minires experiment cardinality` (ResNeXt Table 3 at small
scale): template parsing and divisibility errors, preserved counts, a tiny run that
writes its JSON and plot, reuse of finished runs, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minires as mr
from minires import models
from minires.experiments import TABLE3_TEMPLATES, cardinality, cardinality_findings


def test_templates_parse_and_refuse_bad_widths():
    assert models.parse_template("32x4d") == (32, 4)
    assert models.template_width("8x14d", 32) == 7 and models.template_width("8x14d", 64) == 14
    for bad in ("32x4", "x4d", "0x4d", "4d"):
        with pytest.raises(ValueError, match="CxDd"):
            models.parse_template(bad)
    with pytest.raises(ValueError, match="8x14d.*3.5 is not a whole number"):
        models.template_width("8x14d", 16)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        models.cifar_resnext(12, "32x4d")
    with pytest.raises(ValueError, match="not a whole number"):
        cardinality(["1x64d", "8x14d"], base_planes=16, out_dir=None)
    with pytest.raises(ValueError, match="repeat"):
        cardinality(["1x64d", "1x64d"], out_dir=None)


def test_small_templates_preserve_complexity_and_paper_resnext29():
    counts = {}
    for t in TABLE3_TEMPLATES:
        m = models.cifar_resnext(11, t, base_planes=32, stem_width=32, in_channels=1)
        c, d = models.parse_template(t)
        assert m.layer1[0].conv2.groups == c and m.layer1[0].conv2.out_channels == c * d // 2
        assert m.layer3[0].conv2.out_channels == 2 * c * d
        s = mr.summary(m, (1, 8, 8))
        counts[t] = (s.total_params, s.total_macs)
    macs = [m for _, m in counts.values()]
    params = [p for p, _ in counts.values()]
    assert max(macs) / min(macs) < 1.08 and max(params) / min(params) < 1.10
    with models.no_init():  # the paper's ResNeXt-29 8x64d: 34.4M parameters
        big = models.cifar_resnext(29, "8x64d")
    assert sum(p.data.size for p in big.parameters()) == 34_426_698


def test_tiny_run_writes_json_plot_and_reuses_runs(tmp_path):
    kw = dict(templates=["1x64d", "32x4d"], seeds=[0, 1], epochs=1, limit=48, batch_size=16,
              out_dir=tmp_path, progress=False)  # fmt: skip
    res = cardinality(**kw)
    data = json.loads((tmp_path / "cardinality.json").read_text())
    assert data["templates"].keys() == {"1x64d", "32x4d"}
    for t, v in data["templates"].items():
        assert len(v["errors"]) == 2 and 0 <= v["mean_error"] <= 1 and v["std_error"] >= 0
        m = models.cifar_resnext(11, t, base_planes=32, stem_width=32, in_channels=1)
        s = mr.summary(m, (1, 8, 8))
        assert (v["params"], v["mult_adds"]) == (s.total_params, s.total_macs)
    f = data["findings"]
    assert isinstance(f["trend_larger_than_seed_spread"], bool) and "spread" in f["summary"]
    assert (tmp_path / "cardinality.png").read_bytes()[:4] == b"\x89PNG"
    logs = []
    again = cardinality(**kw, log=logs.append)
    assert sum("reusing" in s for s in logs) == 4
    assert again["templates"]["32x4d"]["errors"] == res["templates"]["32x4d"]["errors"]


def test_findings_see_a_clear_trend_and_no_trend():
    def per(errors):
        out = {}
        for c, es in errors.items():
            es = np.asarray(es)
            out[f"{c}x1d"] = {"cardinality": c, "errors": {str(i): e for i, e in enumerate(es)},
                              "mean_error": es.mean(), "std_error": es.std(ddof=1)}  # fmt: skip
        return out

    clear = cardinality_findings(per({1: [0.10, 0.11, 0.10], 4: [0.07, 0.08, 0.07],
                                      32: [0.03, 0.04, 0.03]}))  # fmt: skip
    assert clear["trend_larger_than_seed_spread"] and clear["paper_direction"]
    noise = cardinality_findings(per({1: [0.05, 0.09, 0.07], 4: [0.08, 0.05, 0.07],
                                      32: [0.06, 0.08, 0.05]}))  # fmt: skip
    assert not noise["trend_larger_than_seed_spread"]
    assert "no trend larger than the seed-to-seed spread" in noise["summary"]


@pytest.fixture
def restore_backend():
    previous = mr.get_backend()
    yield
    mr.set_backend(previous)


def test_cli_bad_template_and_tiny_run(tmp_path, capsys, restore_backend):
    from minires.cli import main

    assert main(["experiment", "cardinality", "--templates", "8x14d", "--base-planes", "16",
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "not a whole number" in capsys.readouterr().err
    code = main(["experiment", "cardinality", "--templates", "2x40d", "4x24d", "--seeds", "0",
                 "--epochs", "1", "--limit", "32", "--out", str(tmp_path), "--no-progress",
                 "--backend", "numpy"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "40/80/160" in out and "48/96/192" in out and "cardinality.json" in out


def test_tiny_run_on_a_cifar10_folder(tmp_path):
    from minires.data.cifar import write_cifar10_folder

    root = write_cifar10_folder(tmp_path / "data", n_per_batch=8)
    res = cardinality(["1x64d", "32x4d"], seeds=[0], base_planes=16, stem_width=16,
                      dataset="cifar10", data_root=root, epochs=1, limit=16, batch_size=8,
                      out_dir=None, progress=False)  # fmt: skip
    assert res["dataset"]["in_channels"] == 3 and res["dataset"]["image_size"] == 32
    m = models.cifar_resnext(11, "32x4d", base_planes=16, stem_width=16)
    assert res["templates"]["32x4d"]["mult_adds"] == mr.summary(m, (3, 32, 32)).total_macs
    assert res["templates"]["32x4d"]["widths_3x3"] == [32, 64, 128]
