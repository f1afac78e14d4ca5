"""``ssl_cyto.fit(task, data, **trainer_options)``: training from Python objects builds the same run as
``ssl-cyto fit`` (checkpoint with provenance, automatic resume), and the argv form keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

import ssl_cyto
from ssl_cyto.data.datamodule import CellDataModule
from ssl_cyto.tasks.simclr import SimCLR
from ssl_cyto.training.fit import FitError
from tests.training.fake_slurm import load


def _task() -> SimCLR:
    return SimCLR(backbone="tiny_cnn", backbone_kwargs={"width": 4, "depth": 2}, input_size=32)


def test_fit_from_objects_writes_and_resumes(
    tmp_path: Path, synth_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "run"

    def data() -> CellDataModule:
        return CellDataModule(
            str(synth_folder), batch_size=8, num_workers=0, batches_per_epoch=2, val_size=24
        )

    options = {"default_root_dir": str(root), "accelerator": "cpu", "run": {"logger": "none"}}
    sections = {"checkpoint": {"every_n_train_steps": 2}, "progress": {"every_s": 0.01}}
    ckpt = ssl_cyto.fit(_task(), data(), max_steps=3, sections=sections, **options)
    saved = load(Path(ckpt))
    assert saved["global_step"] == 3 and saved["ssl_cyto"]["method"] == "simclr"
    assert saved["ssl_cyto"]["config"]["model"]["init_args"]["input_size"] == 32
    assert "fit: step 3/3 (100%)" in capsys.readouterr().err  # progress lines: stderr is not a terminal
    ckpt = ssl_cyto.fit(_task(), data(), max_steps=5, **options)
    assert f"resuming from {ckpt}" in capsys.readouterr().err and load(Path(ckpt))["global_step"] == 5
    with pytest.raises(FitError, match="give the data"):
        ssl_cyto.fit(_task())
    with pytest.raises(FitError, match="unknown section"):
        ssl_cyto.fit(_task(), data(), sections={"nope": {}}, **options)
    with pytest.raises(FitError, match="argument list"):
        ssl_cyto.fit(["--config", "smoke_simclr"], max_steps=3)
