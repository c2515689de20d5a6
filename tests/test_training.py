"""minires.training and the train / experiment commands: resume equality (bit for bit),
Ctrl-C, metrics files, curves, the accuracy of a small ResNet on the embedded digits."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import minires as mr
from minires import data, training
from minires.cli import main as cli
from minires.models import cifar_resnet


def _setup(epochs=3, seed=0, augment=True, depth=8, schedule="cosine", warmup=1, ds="digits"):
    mr.manual_seed(seed)
    tr, te, info = data.make_loaders(ds, batch_size=64, seed=seed, augment=augment)
    model = cifar_resnet(depth, num_classes=10, in_channels=1)
    opt = training.build_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = training.build_scheduler(opt, schedule, epochs=epochs, warmup=warmup)
    return model, tr, te, opt, sched


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def _strip_time(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_resume_equals_straight_run(tmp_path):
    """2 epochs, then resume for 1 more == 3 epochs straight: weights, batchnorm buffers,
    optimizer buffers, lr and every metric identical. (Synthetic 8x8 data, with random-crop
    augmentation, to keep it quick; the CLI test below does the same on digits.)"""
    model, tr, te, opt, sched = _setup(ds="synthetic")
    straight = training.train(model, tr, te, 3, opt, sched, progress=False, out_dir=tmp_path / "a")

    m2, tr2, te2, opt2, sched2 = _setup(ds="synthetic")
    first = training.train(m2, tr2, te2, 2, opt2, sched2, progress=False, out_dir=tmp_path / "b")
    assert len(first) == 2 and not first.interrupted
    m3, tr3, te3, opt3, sched3 = _setup(
        seed=99, ds="synthetic"
    )  # a different init: the checkpoint decides
    resumed = training.train(
        m3, tr3, te3, 3, opt3, sched3, progress=False, out_dir=tmp_path / "b", resume=True
    )
    _assert_same_state(model, m3)
    assert _strip_time(resumed.rows) == _strip_time(straight.rows)
    assert sched3.get_last_lr() == sched.get_last_lr()
    sa, sb = opt.state_dict()["state"], opt3.state_dict()["state"]
    for k in sa:
        np.testing.assert_array_equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"])


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(tmp_path):
    model, tr, te, opt, sched = _setup(epochs=2, ds="synthetic")
    straight = training.train(model, tr, te, 2, opt, sched, progress=False)

    def interrupt(epoch, batch, info):
        if (epoch, batch) == (0, 1):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    m2, tr2, te2, opt2, sched2 = _setup(epochs=2, ds="synthetic")
    handler_before = signal.getsignal(signal.SIGINT)
    h = training.train(
        m2, tr2, te2, 2, opt2, sched2, progress=False, out_dir=tmp_path, callback=interrupt
    )
    assert h.interrupted and len(h) == 0
    ck = training.load_checkpoint(tmp_path)
    assert (ck["epoch"], ck["batch"]) == (0, 2)
    assert signal.getsignal(signal.SIGINT) is handler_before  # handler restored

    m3, tr3, te3, opt3, sched3 = _setup(epochs=2, seed=5, ds="synthetic")
    h3 = training.train(
        m3, tr3, te3, 2, opt3, sched3, progress=False, out_dir=tmp_path, resume=True
    )
    _assert_same_state(model, m3)
    assert _strip_time(h3.rows) == _strip_time(straight.rows)


def test_outputs_written(tmp_path):
    model, tr, te, opt, sched = _setup(epochs=2, augment=False, ds="synthetic")
    training.train(model, tr, te, 2, opt, sched, progress=False, out_dir=tmp_path, config={"x": 1})
    names = sorted(os.listdir(tmp_path))
    assert names == ["checkpoint.npz", "curves.png", "metrics.csv", "metrics.json", "model.npz"]
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == training.METRIC_FIELDS and len(lines) == 3
    meta = json.loads((tmp_path / "metrics.json").read_text())
    assert meta["config"] == {"x": 1} and len(meta["history"]) == 2
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    weights = mr.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(weights["fc.weight"], model.fc.weight.data)


def test_small_resnet_reaches_90_percent_on_digits(capsys):
    """The acceptance figure: a CIFAR-style ResNet-8 on the embedded 8x8 digits."""
    model, tr, te, opt, sched = _setup(epochs=4, augment=False, schedule="cosine", warmup=0)
    h = training.train(model, tr, te, 4, opt, sched, progress=False)
    loss, acc = training.evaluate(model, te)
    assert acc == h.last["test_acc"]
    with capsys.disabled():
        print(f"\n[digits] resnet8, 4 epochs: test accuracy {100 * acc:.2f}%")
    assert acc >= 0.90


def test_evaluate_restores_mode_and_builds_no_graph():
    model, tr, te, *_ = _setup(epochs=1)
    model.train()
    loss, acc = training.evaluate(model, te)
    assert model.training and 0.0 <= acc <= 1.0 and loss > 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported():
    model, tr, te, *_ = _setup(epochs=1)
    opt = training.build_optimizer(model, "sgd", lr=1e30, momentum=0.9)
    with pytest.raises(FloatingPointError, match="smaller learning rate"):
        training.train(model, tr, None, 1, opt, progress=False)


def test_checkpoint_refuses_other_files(tmp_path):
    mr.save({"w": np.zeros(2)}, tmp_path / "w.npz")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        training.load_checkpoint(tmp_path / "w.npz")


def test_build_scheduler_and_optimizer_names():
    model = cifar_resnet(8, in_channels=1)
    opt = training.build_optimizer(model, "adamw", lr=1e-3)
    assert type(opt).__name__ == "AdamW"
    s = training.build_scheduler(opt, "multistep", epochs=8)
    assert [round(s.lr_at(e)[0] / 1e-3, 6) for e in range(8)] == [1] * 4 + [0.1] * 2 + [0.01] * 2
    with pytest.raises(ValueError, match="schedule"):
        training.build_scheduler(opt, "wavy")
    with pytest.raises(ValueError, match="optimizer"):
        training.build_optimizer(model, "lbfgs")


def test_plot_runs(tmp_path):
    rows = [{"epoch": e, "train_error": 1 / e, "test_error": 1.2 / e} for e in (1, 2, 3)]
    training.plot_runs({"a": rows, "b": rows}, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_plot_runs_labels_the_dashed_test_lines(tmp_path):
    rows = [{"epoch": e, "train_error": 1 / e, "test_error": 1.2 / e} for e in (1, 2, 3)]
    fig = training.plot_runs({"resnet8": rows, "plain8": rows}, tmp_path / "r.png")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["resnet8 (train error)", "resnet8 (test error)",
                      "plain8 (train error)", "plain8 (test error)"]  # fmt: skip
    assert ax.get_ylabel() == "train error, bold; test error, dashed (%)"
    no_test = [{"epoch": 1, "train_error": 0.5, "test_error": None}]
    ax = training.plot_runs({"a": no_test}).axes[0]
    assert ax.get_ylabel() == "train error (%)" and ax.get_legend().get_texts()[0].get_text() == "a"


# -- commands -------------------------------------------------------------------------------

ARGS = ["--model", "cifar_resnet8", "--batch-size", "256", "--no-progress", "--no-plot"]


def test_cli_train_resume_equals_straight(tmp_path, capsys):
    sched = ["--schedule", "multistep", "--milestones", "1", "2"]
    assert cli(["train", *ARGS, *sched, "--epochs", "3", "--out", str(tmp_path / "a")]) == 0
    assert cli(["train", *ARGS, *sched, "--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    assert cli(["train", "--resume", str(tmp_path / "b"), "--epochs", "3", "--no-progress"]) == 0
    a, b = mr.load(tmp_path / "a" / "model.npz"), mr.load(tmp_path / "b" / "model.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha = json.loads((tmp_path / "a" / "metrics.json").read_text())["history"]
    hb = json.loads((tmp_path / "b" / "metrics.json").read_text())["history"]
    assert _strip_time(ha) == _strip_time(hb)
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out)["epoch"] == 3


def test_cli_errors(tmp_path, capsys):
    code = cli(["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--out",
                str(tmp_path / "o")])  # fmt: skip
    assert code == 2 and "cifar-10-python.tar.gz" in capsys.readouterr().err
    assert cli(["train", "--model", "resnet7", "--out", str(tmp_path / "o")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert cli(["train", "--resume", str(tmp_path / "nothing")]) == 2


def test_degradation_experiment_records_json(tmp_path, capsys):
    from minires.experiments import degradation

    out = tmp_path / "deg"
    res = degradation(
        depths=(8, 14), dataset="synthetic", epochs=2, batch_size=64, out_dir=out, progress=False
    )
    assert set(res["runs"]) == {"plain8", "plain14", "resnet8", "resnet14"}
    saved = json.loads((out / "degradation.json").read_text())
    assert saved["settings"]["depths"] == [8, 14] and len(saved["runs"]["plain14"]["history"]) == 2
    assert set(saved["findings"]) >= {"plain_deeper_trains_worse", "residual_deeper_not_worse"}
    assert (out / "degradation.png").exists()
    # a second call reuses the finished runs instead of training again
    again = degradation(
        depths=(8, 14), dataset="synthetic", epochs=2, batch_size=64, out_dir=out, progress=False
    )
    assert again["runs"]["plain14"]["history"] == res["runs"]["plain14"]["history"]
    assert "reusing" in capsys.readouterr().err
    with pytest.raises(ValueError, match="6n"):
        degradation(depths=(8, 10), out_dir=None)


def test_degradation_experiment_preact_family(tmp_path, capsys):
    """--family preact: pre-activation nets only; the JSON says whether the deeper one
    trains at least as well (He et al. 2016b), consistently with the recorded errors."""
    from minires.cli import main as cli
    from minires.experiments import degradation

    out = tmp_path / "pre"
    code = cli([
        "experiment", "degradation", "--family", "preact", "--depths", "8", "14",
        "--dataset", "synthetic", "--epochs", "2", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    saved = json.loads((out / "degradation.json").read_text())
    assert set(saved["runs"]) == {"preact8", "preact14"} and saved["settings"]["family"] == "preact"
    assert (
        saved["runs"]["preact14"]["kind"] == "preact" and "Identity Mappings" in saved["experiment"]
    )
    f = saved["findings"]
    lo, hi = (saved["runs"][f"preact{d}"]["mean_train_error"] for d in (8, 14))
    assert f["preact_depth_penalty"] == pytest.approx(hi - lo)
    assert f["reproduces_he2016b"] == f["preact_deeper_not_worse"] == (hi <= lo + 0.005)
    assert ("claim holds" in f["summary"]) == f["reproduces_he2016b"]
    # the summary line is printed once (stdout), not again on stderr
    assert captured.out.count(f["summary"]) == 1 and f["summary"] not in captured.err
    assert (out / "degradation.png").exists()
    with pytest.raises(ValueError, match="family must be one of 'resnet', 'preact'"):
        degradation(depths=(8, 14), family="post", out_dir=None)
    with pytest.raises(SystemExit) as exc:
        cli(["experiment", "degradation", "--family", "post"])
    assert exc.value.code == 2
    assert "invalid choice: 'post' (choose from 'resnet', 'preact')" in capsys.readouterr().err


@pytest.mark.slow
def test_resnet20_on_digits_slow(capsys):
    model, tr, te, opt, sched = _setup(epochs=10, augment=False, depth=20, warmup=0)
    h = training.train(model, tr, te, 10, opt, sched, progress=False)
    with capsys.disabled():
        print(f"\n[digits] resnet20, 10 epochs: test accuracy {100 * h.last['test_acc']:.2f}%")
    assert h.last["test_acc"] >= 0.95


@pytest.mark.slow
def test_cli_ctrl_c_in_a_real_process(tmp_path):
    """SIGINT to a running `minires train` saves a checkpoint and exits with 130."""
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "minires", "train", *ARGS, "--epochs", "100", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not (out / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "--resume" in err
    ck = training.load_checkpoint(out)
    assert ck["epoch"] >= 1


def test_plot_history_of_a_run_tested_only_in_some_epochs(tmp_path):
    # a run resumed with a test set after epochs without one (found in session 13)
    rows = [{"epoch": e, "train_loss": 1 / e, "train_error": 0.5 / e,
             "test_loss": None if e < 3 else 1.1 / e, "test_error": None if e < 3 else 0.6 / e}
            for e in (1, 2, 3, 4)]  # fmt: skip
    fig = training.plot_history(rows, tmp_path / "h.png")
    test_line = [ln for ln in fig.axes[1].get_lines() if ln.get_label() == "test"][0]
    assert list(test_line.get_xdata()) == [3, 4]
    assert (tmp_path / "h.png").stat().st_size > 1000
