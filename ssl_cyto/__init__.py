"""ssl_cyto: self-supervised learning on single-cell cytomorphology images.

Importing the package is cheap: torch, faiss, umap and wandb are imported only inside the
functions that need them, so ``ssl-cyto --help`` answers at once.
"""

__version__ = "0.1.0"
