"""`minires demo --quick` runs end to end and writes its report and plots."""

from __future__ import annotations

from minires.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--backend", "numpy"]) == 0
    text = (out / "report.md").read_text()
    assert "ops pass in float64" in text
    assert "max |I + R - full|" in text  # the decomposition's own sum check is reported
    assert "preact_resnet8" in text and "exactly equal: True" in text  # the literal formula
    assert "resnet8: train error" in text and "plain8: train error" in text
    assert "conv2 32x4d" in text  # the conv timing table made it into the report
    for png in ("decomposition.png", "gradient_flow.png", "training.png"):
        assert (out / png).stat().st_size > 1000
