"""The project's own backbones: a torch-free table of name -> ``"module:Class"``.

Any other name is a timm model (built by :func:`ssl_cyto.models.factory.build_backbone`). Adding a
backbone is one module with an ``nn.Module`` class that has a ``num_features`` attribute, plus one
line here. The table imports nothing, so command-line help can list the names cheaply.
"""

from __future__ import annotations

BACKBONES: dict[str, str] = {
    "tiny_cnn": "ssl_cyto.models.tiny_cnn:TinyCNN",
    "colour_hist": "ssl_cyto.models.colour_hist:ColourHistogram",
}

#: Backbones that must see raw [0, 1] pixels (no normalisation).
IDENTITY_NORM_BACKBONES = ("colour_hist",)
#: Backbones that have no weights at all (a fixed computation): never "random weights".
WEIGHTLESS_BACKBONES = ("colour_hist",)
#: Prefixes of model names that timm resolves on the Hugging Face hub (a download).
HUB_PREFIXES = ("hf-hub:", "hf_hub:", "timm/")
#: How to use trained weights instead, said with every refusal and random-weights note.
WEIGHTS_ADVICE = (
    "pass a backbone folder from `ssl-cyto export` or a training .ckpt as --model, or keep the "
    "architecture name and give a local weights file with `ssl-cyto embed --weights FILE` (a state_dict saved with "
    "torch.save, e.g. of timm.create_model(NAME, pretrained=True) on a machine with internet)"
)


def pretrained_tag(name: str) -> str | None:
    """The pretrained-weight part of a model name (``a1_in1k`` of ``resnet18.a1_in1k``, a hub
    prefix), or None for a plain architecture name. Torch-free, for checks before any work."""
    if name.startswith(HUB_PREFIXES):
        return name
    base, dot, tag = name.partition(".")
    return (
        tag
        if dot and base and tag and "/" not in name and not name.endswith((".json", ".ckpt", ".pt"))
        else None
    )


def pretrained_refusal(name: str) -> str:
    """The message refusing a pretrained-weight name: the reason (no downloads) and the fix."""
    base = name.partition(".")[0] if not name.startswith(HUB_PREFIXES) else "ARCH"
    return (
        f"--model {name}: names pretrained weights ({pretrained_tag(name)}), which would be downloaded; "
        f"ssl_cyto never downloads weights (runs must be reproducible from local files, compute nodes "
        f"are often offline). Use `ssl-cyto embed --model {base} --weights FILE` with a local copy of the weights, or "
        + WEIGHTS_ADVICE.split(", or keep", 1)[0]
    )


def random_weights_note(name: str, seed: int) -> str:
    """The one-line note that a backbone given by name starts from seeded random weights."""
    return (
        f"--model {name} is an architecture name: it gets seeded RANDOM weights (seed {seed}), not "
        f"pretrained ones, and outputs are labelled 'random weights'. For trained weights, {WEIGHTS_ADVICE}"
    )


def backbone_names() -> list[str]:
    """The names of the project's own backbones (timm names come on top of these)."""
    return list(BACKBONES)
