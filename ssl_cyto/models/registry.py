"""The project's own backbones: a torch-free table of name -> ``"module:Class"``.

Any other name is a timm model (built by :func:`ssl_cyto.models.factory.build_backbone`); a name
with released weights (``resnet18.a1_in1k``, ``hf-hub:ORG/NAME[@REV]``, ``local-dir:PATH``) is
fetched by :mod:`ssl_cyto.models.hub`. Adding a
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
#: Prefixes of model names that name released weights (fetched through huggingface_hub, or a local folder).
HUB_PREFIXES = ("hf-hub:", "hf_hub:", "timm/", "local-dir:")
#: How to use trained weights instead, said with every random-weights note.
WEIGHTS_ADVICE = (
    "pass released weights (a timm name with its tag such as resnet18.a1_in1k, hf-hub:ORG/NAME, "
    "local-dir:PATH), a backbone folder from `ssl-cyto export` or a training .ckpt as --model, or keep the "
    "architecture name and give a local weights file with `ssl-cyto embed --weights FILE` (safetensors or a torch.save'd "
    "state_dict)"
)
#: File suffixes that make a name a local file, never a timm tag.
LOCAL_SUFFIXES = (".json", ".ckpt", ".pt", ".pth", ".bin", ".safetensors")
#: The way out when released weights cannot be fetched, said with every hub error.
WEIGHTS_ADVICE_SHORT = (
    "pass `ssl-cyto embed --model ARCH --weights FILE` (fit: model.init_args.checkpoint_path) with a local "
    "copy of the weights (safetensors or state_dict)"
)


def pretrained_tag(name: str) -> str | None:
    """The released-weights part of a model name (``a1_in1k`` of ``resnet18.a1_in1k``, a hub or
    ``local-dir:`` prefix), or None for a plain architecture name. Torch-free, for checks before any work."""
    if name.startswith(HUB_PREFIXES):
        return name
    base, dot, tag = name.partition(".")
    return (
        tag
        if dot and base and tag and "/" not in name and not name.endswith(LOCAL_SUFFIXES)
        else None
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
