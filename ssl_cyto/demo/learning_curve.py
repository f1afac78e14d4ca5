"""The pretraining learning curve: online kNN accuracy and training loss per step, from the CSV log."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
import pandas as pd  # noqa: E402


def plot_learning_curve(train_root: str | Path, out_png: str | Path) -> Path | None:
    """Online kNN accuracy and training loss against the step, from the run's CSV log.

    Args:
        train_root: the run's ``trainer.default_root_dir`` (holds ``csv/version_*/metrics.csv``).
        out_png: the figure to write.

    Returns:
        The PNG path, or None when the run logged no CSV metrics.
    """
    files = sorted(Path(train_root).glob("csv/version_*/metrics.csv"))
    if not files:
        return None
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    fig, ax1 = plt.subplots(figsize=(7, 4), dpi=120)
    if "knn/acc" in df:
        knn = df.dropna(subset=["knn/acc"]).drop_duplicates("step", keep="last")
        ax1.plot(knn["step"], knn["knn/acc"], "o-", color="tab:blue", ms=3, label="online kNN-20 accuracy (val subset)")
    ax1.set_xlabel("optimiser step")
    ax1.set_ylabel("online kNN-20 accuracy", color="tab:blue")
    loss_col = "train/loss_step" if "train/loss_step" in df else "train/loss"
    if loss_col in df:
        ax2 = ax1.twinx()
        loss = df.dropna(subset=[loss_col])
        ax2.plot(loss["step"], loss[loss_col], color="tab:orange", alpha=0.6, lw=1, label="training loss")
        ax2.set_ylabel("training loss", color="tab:orange")
    ax1.set_title("Pretraining: online kNN accuracy and loss")
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
