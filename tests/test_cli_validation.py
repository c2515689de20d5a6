"""The command line refuses bad numbers at parsing (exit 2, one line, nothing written),
never overwrites a run, explains resumes, and prints plain prose."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from minires.cli import COMMANDS
from minires.cli import main as cli

TRAIN = ["--model", "cifar_resnet8", "--dataset", "synthetic", "--batch-size", "128",
         "--no-progress", "--no-plot"]  # fmt: skip


BAD_NUMBERS = [
    ("train", ["--epochs", "-1"], "--epochs: expected a positive integer, got -1"),
    ("train", ["--epochs", "0"], "--epochs: expected a positive integer, got 0"),
    ("train", ["--epochs", "2.5"], "--epochs: expected a positive integer, got '2.5'"),
    ("train", ["--lr", "-0.1"], "--lr: expected a positive number, got -0.1"),
    ("train", ["--lr", "nan"], "--lr: expected a positive number, got 'nan'"),
    ("train", ["--batch-size", "0"], "--batch-size: expected a positive integer"),
    ("train", ["--momentum", "1.5"], "--momentum: expected a number between 0 and 1"),
    ("train", ["--weight-decay=-1e-4"], "--weight-decay: expected a number >= 0"),
    ("train", ["--warmup", "-2"], "--warmup: expected an integer >= 0"),
    ("train", ["--milestones", "3", "0"], "--milestones: expected a positive integer, got 0"),
    ("train", ["--gamma", "0"], "--gamma: expected a positive number"),
    ("train", ["--seed", "-1"], "--seed: expected an integer >= 0"),
    ("experiment", ["degradation", "--depths", "8", "10"], "--depths: expected a depth 6n+2"),
    ("experiment", ["degradation", "--epochs", "0"], "--epochs: expected a positive integer"),
    ("experiment", ["degradation", "--lr", "-1"], "--lr: expected a positive number"),
    ("explain", ["--depth", "21"], "--depth: expected a depth 6n+2"),
    ("explain", ["--steps", "-1"], "--steps: expected an integer >= 0"),
    ("explain", ["--batch-size", "0"], "--batch-size: expected a positive integer"),
    ("summary", ["resnet18", "--input", "3,0,32"], "--input expects C,H,W"),
    ("bench", ["--batch", "0"], "--batch: expected a positive integer"),
    ("bench", ["--tol", "-1"], "--tol: expected a positive number"),
    ("bench", ["--warmup", "-1"], "--warmup: expected an integer >= 0"),
    ("demo", ["--seed", "-3"], "--seed: expected an integer >= 0"),
    ("gradcheck", ["--seed", "x"], "--seed: expected an integer >= 0, got 'x'"),
]


@pytest.mark.parametrize("command, args, message", BAD_NUMBERS)
def test_parser_refuses_bad_numbers_in_one_line(tmp_path, capsys, monkeypatch, command, args,
                                                message):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli([command, *args, "--out", str(tmp_path / "out")] if command != "summary"
            else [command, *args])  # fmt: skip
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith(f"minires {command}")
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []  # nothing written, not even the output folder


def _run_files(path):
    return sorted(os.listdir(path))


def test_train_never_overwrites_a_run_and_explains_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli(["train", *TRAIN, "--epochs", "1", "--out", out]) == 0
    before = {f: (tmp_path / "run" / f).read_bytes() for f in _run_files(out)}
    assert "checkpoint.npz" in before and "metrics.json" in before
    capsys.readouterr()

    # a second plain run into the same folder is refused, files untouched
    assert cli(["train", *TRAIN, "--epochs", "2", "--out", out]) == 2
    err = capsys.readouterr().err
    assert f"minires train --resume {out}" in err and "--force" in err
    assert {f: (tmp_path / "run" / f).read_bytes() for f in _run_files(out)} == before

    # resuming the finished run says so and how to extend it; nothing changes
    assert cli(["train", "--resume", out, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "already finished its 1 epoch;" in err
    assert f"minires train --resume {out} --epochs 2" in err
    assert "continuing" not in err
    assert {f: (tmp_path / "run" / f).read_bytes() for f in _run_files(out)} == before

    # ... and extending it works, with a message that counts correctly
    assert cli(["train", "--resume", out, "--epochs", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "continuing at epoch 2 of 2" in err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["history"][-1]["epoch"] == 2

    # --force replaces the run
    assert cli(["train", *TRAIN, "--epochs", "1", "--out", out, "--force"]) == 0
    hist = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert len(hist) == 1


def test_resume_mid_epoch_counts_batches_of_the_epoch(tmp_path):
    import minires as mr
    from minires import data, training
    from minires.models import get_model

    mr.manual_seed(0)
    tr, te, _ = data.make_loaders("synthetic", batch_size=64, seed=0)
    model = get_model("cifar_resnet8", num_classes=10, in_channels=1)
    opt = training.build_optimizer(model, "sgd", lr=0.05)

    def interrupt(epoch, batch, info):
        if epoch == 1 and batch == 1:
            os.kill(os.getpid(), 2)  # Ctrl-C: saves a checkpoint at epoch 2, batch 3

    h = training.train(model, tr, None, 3, opt, out_dir=tmp_path, progress=False,
                       callback=interrupt, log=lambda s: None)  # fmt: skip
    assert h.interrupted
    logs: list[str] = []
    training.train(model, tr, None, 3, opt, out_dir=tmp_path, progress=False,
                   resume=True, log=logs.append)  # fmt: skip
    assert f"continuing at epoch 2 of 3, batch 3 of {len(tr)}" in logs[0]


def test_schedule_warnings(tmp_path, capsys):
    out = str(tmp_path / "w")
    args = ["--schedule", "multistep", "--milestones", "1", "4", "--epochs", "2", "--out", out]
    assert cli(["train", *TRAIN, *args]) == 0
    err = capsys.readouterr().err
    assert "warning: --milestones 4 fall at or beyond --epochs 2" in err
    assert cli(["train", *TRAIN, "--warmup", "2", "--epochs", "2", "--out", out, "--force"]) == 0
    assert "--warmup 2 is not shorter than --epochs 2" in capsys.readouterr().err


def test_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for cmd in (["train", *TRAIN, "--epochs", "1"], ["explain"], ["demo", "--quick"],
                ["experiment", "degradation"], ["bench", "--quick"]):  # fmt: skip
        code = cli([*cmd, "--out", str(blocker / "sub")])
        err = capsys.readouterr().err
        assert code == 2, cmd
        assert "cannot create the output folder" in err and err.count("\n") == 1, err


def test_bench_help_names_minires_bench(capsys):
    with pytest.raises(SystemExit) as info:
        cli(["bench", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: minires bench")
    assert "python -m" not in out


@pytest.mark.parametrize("command", [*sorted(COMMANDS), "experiment degradation"])
def test_help_is_plain_prose(capsys, command):
    with pytest.raises(SystemExit):
        cli([*command.split(), "--help"])
    out = capsys.readouterr().out
    assert out.startswith(f"usage: minires {command}")
    assert "``" not in out and "`" not in out, out


def test_console_script_errors_have_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "minires", "train", "--epochs", "-1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "minires train: error: argument --epochs: expected a positive integer, got -1 "
        "(see 'minires train --help')"
    ]
    assert os.listdir(tmp_path) == []


def test_resume_from_a_checkpoint_that_does_not_fit_is_refused_plainly(tmp_path, capsys):
    import minires as mr

    out = tmp_path / "run"
    assert cli(["train", *TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    ck = mr.load(out / "checkpoint.npz")
    first = next(iter(ck["model"]))
    ck["model"][first] = ck["model"][first][..., :1]  # a tensor of another shape
    mr.save(ck, out / "checkpoint.npz")
    capsys.readouterr()
    assert cli(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"minires train: cannot resume from {out}" in err and first in err
    assert "Traceback" not in err
