"""Batched image augmentation with per-sample random parameters, on any device.

Why this module exists
----------------------
SCL, like MoCo and SimCLR, trains on two *independently* augmented views of every image.
The usual route -- a torchvision ``Compose`` called once per image in a
``Dataset.__getitem__`` -- runs on the CPU one image at a time, and for 32 x 32 images the
data loader, not the network, becomes the bottleneck. The tempting shortcut, calling
torchvision's v2 transforms on a whole ``B x C x H x W`` tensor, is *wrong*: a v2
transform treats the batch as one image and draws ONE set of random parameters for it, so
every image of the batch gets the same crop, the same flip and the same colour jitter.
That silently removes most of the augmentation diversity contrastive learning relies on.

This module draws independent parameters for every sample and applies them all at once
with batched tensor operations -- one sampling grid (``F.affine_grid``'s, built by
broadcasting) + ``grid_sample`` for the geometry, per-sample factors and selections for
the photometric transforms, grouped convolutions for the per-sample Gaussian blur -- with no
Python loop over samples, on whatever device the batch is on. Intermediate images are
updated in place where possible: on a CPU, touching fresh large buffers (page faults)
can cost as much as the arithmetic.

Determinism and transfers
-------------------------
Every random parameter is drawn on the CPU from the ``torch.Generator`` passed in, in a
fixed order and number that depend only on the recipe, the image size and the batch
size. A seed therefore gives the same parameters on CPU and GPU. ``forward(x, g)`` is
``apply(x, sample_params(len(x), g))``; the split lets a test (or a debugging session)
replay the same parameters. ``device_params`` turns one view's parameters into
fixed-shape float32 tensors (grid matrices, per-stage factors, masks, blur kernels,
noise) on the CPU; ``draw`` does that for many steps' views at once, in the order
``forward`` would draw them, and moves them to the device in ONE copy, after which
``apply_device`` runs on the device without reading anything back: the training loop
draws a chunk of steps at a time (scl/train.py), so a step makes no host transfer.

Recipes
-------
``mocov2``     colour images (MoCo v2 / SimCLR): RandomResizedCrop(scale 0.2-1, ratio
               3/4-4/3), horizontal flip 0.5, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8,
               RandomGrayscale 0.2, Gaussian blur (sigma 0.1-2, p 0.5) only when
               ``image_size >= 64``; ImageNet mean/std.
``strong_color``  as mocov2, with SimCLR's colour distortion of strength 1:
               ColorJitter(0.8, 0.8, 0.8, 0.2) with p 0.8 (the `folder` default).
``luminance``  colour images, colour ignored: every view and the eval path are the
               image's luminance (3 equal channels), crop scale 0.5-1, flip, brightness /
               contrast 0.6-1.4 with p 0.8, noise 0.02 (the grayscale recipe on luminance)
``grayscale``  small one-channel images (Fashion-MNIST): RandomResizedCrop(scale 0.5-1),
               flip 0.5, brightness/contrast jitter 0.4 with p 0.8, Gaussian noise
               (std 0.02); normalised with the Fashion-MNIST mean/std (0.286, 0.353),
               used as the recipe's single constant for any one-channel data set.
``digits``     8 x 8 digits: a crop or flip would destroy or change the digit, so a small
               random affine instead (rotation +-12 deg, scale 0.9-1.1, shear +-8 deg,
               translation +-1 pixel, zero fill), contrast 0.7-1.3 and an additive
               brightness shift +-0.1 (always applied), Gaussian noise (std 0.05);
               normalised as (x - 0.5) / 0.5.

Departures from torchvision / MoCo v2 semantics (deliberate and small)
-----------------------------------------------------------------------
* Crop boxes are continuous (sub-pixel position and size); torchvision rounds them to
  whole pixels. The sample points are clamped to the crop box, as torchvision's resize of
  the cropped image clamps at the crop's edge, so for a whole-pixel box that is not
  shrunk the two agree (tested). When the crop is *larger* than the output (input bigger
  than ``image_size``) ``grid_sample`` does not antialias, torchvision does; prepare data
  at the training resolution to avoid that case.
* RandomResizedCrop's rejection sampling (10 tries, then a fallback) is reproduced
  vectorised: 10 candidate boxes per sample, the first that fits is used; if none fits
  (probability ~1e-9 for MoCo's ranges) the whole image is used -- torchvision's fallback
  is a centre crop, which is the whole image for square inputs. Aspect ratios are
  relative to the input's own shape (the same thing for square images, which all
  prepared data sets are).
* The horizontal flip is folded into the crop's affine matrix. MoCo v2 flips last, but
  every later step (colour, grayscale, a symmetric blur with reflect padding) commutes
  with a flip, so this is exact.
* ColorJitter's random order of the four factors is kept *per sample* (torchvision draws
  one order per call). Stage k applies to each sample the operation its order puts k-th,
  with fixed shapes: brightness, contrast and saturation are all blends, f * img +
  (1 - f) * other, so a stage is ONE blend over the whole batch with each sample's own
  factor and 0 / 1 weights choosing what `other` is (0, the mean gray or the gray image);
  a sample whose operation at that stage is another one gets f = 1, which leaves it bit
  for bit as it is. The hue rotation is computed for the whole batch and selected per
  sample. Results are identical, bit for bit, to the earlier implementation that ran
  each operation on the rows (an index_select of a variable-size row group) that used it
  (checked when this changed; tests compare with a per-sample loop and torchvision).
  The shapes no longer depend on the draws, so the augmentation can be compiled and
  captured in a CUDA graph; the price is the hue rotation computed four times per view
  (mocov2 only; about 4x the augmentation's CPU arithmetic at 32 x 32, still small
  beside a ResNet step).
* Hue uses a closed form of RGB -> HSV -> RGB (one modulo, no saturation division);
  equal to torchvision's adjust_hue up to float rounding (tested).
* The Gaussian blur kernel is torchvision's (odd size ~10% of the image, reflect
  padding, sigma uniform in (0.1, 2)) rather than PIL's ``GaussianBlur(radius)`` that the
  MoCo v2 code uses; MoCo v2 only blurs large images, hence the ``image_size >= 64`` rule.
* The mocov2 colour steps act on the cropped, resized float image, as torchvision's
  tensor path does; MoCo v2's PIL path works on 8-bit images (rounding differences only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "RECIPES",
    "Recipe",
    "BatchAugment",
    "EvalTransform",
    "blur_kernel_size",
    "build_augment",
    "build_eval_transform",
    "get_recipe",
]

RECIPES = ("mocov2", "strong_color", "luminance", "grayscale", "digits")

# torchvision's luminance weights (rgb_to_grayscale), used by grayscale, contrast and saturation.
_LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class Recipe:
    """Everything that defines an augmentation recipe (ranges, probabilities, normalisation)."""

    name: str
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    geometry: Literal["crop", "affine"]
    # grid_sample padding. Crop geometry clamps its sample points inside the image, so
    # padding is never read there; the affine geometry exposes the outside (black).
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros"
    # "crop": RandomResizedCrop + horizontal flip.
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    crop_tries: int = 10
    flip_p: float = 0.0
    # "affine": small random affine, ranges symmetric around the identity.
    rotation_deg: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    shear_deg: float = 0.0
    translate_px: float = 0.0
    # Photometric: (operation, low, high) factor ranges, applied with probability jitter_p.
    jitter: tuple[tuple[str, float, float], ...] = ()
    jitter_p: float = 0.0
    jitter_random_order: bool = True
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_min_size: int = 64
    noise_std: float = 0.0
    # the un-augmented (eval) path converts to luminance too: for recipes that always do
    # (grayscale_p = 1), so the network never meets colour it was trained without
    eval_grayscale: bool = False
    grayscale_first: bool = False  # grayscale before the colour jitter (exact colour invariance: no per-channel clipping)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_MOCOV2 = Recipe(
    name="mocov2",
    channels=3,
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
    geometry="crop",
    padding_mode="border",
    crop_scale=(0.2, 1.0),
    flip_p=0.5,
    jitter=(("brightness", 0.6, 1.4), ("contrast", 0.6, 1.4), ("saturation", 0.6, 1.4), ("hue", -0.1, 0.1)),
    jitter_p=0.8,
    grayscale_p=0.2,
    blur_p=0.5,
    blur_sigma=(0.1, 2.0),
    blur_min_size=64,
)

_GRAYSCALE = Recipe(
    name="grayscale",
    channels=1,
    mean=(0.286,),  # Fashion-MNIST pixel mean / std: one constant for the recipe
    std=(0.353,),
    geometry="crop",
    padding_mode="zeros",  # never read (see Recipe.padding_mode); black background anyway
    crop_scale=(0.5, 1.0),
    flip_p=0.5,
    jitter=(("brightness", 0.6, 1.4), ("contrast", 0.6, 1.4)),
    jitter_p=0.8,
    noise_std=0.02,
)

_RECIPES: dict[str, Recipe] = {
    "mocov2": _MOCOV2,
    # mocov2 with SimCLR's colour distortion of strength 1 (Chen et al. 2020, appendix A:
    # ColorJitter(0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale 0.2): for images whose classes
    # do not lie in their colours (the `folder` default; see results/folder-demo).
    "strong_color": replace(
        _MOCOV2,
        name="strong_color",
        jitter=(("brightness", 0.2, 1.8), ("contrast", 0.2, 1.8), ("saturation", 0.2, 1.8), ("hue", -0.2, 0.2)),
    ),
    # colour images whose classes do not lie in their colours (the `folder` default, from
    # the trials in results/folder-demo): every view, and the eval path, is the image's
    # luminance (kept as 3 equal channels, so data, sheets and exports stay in colour),
    # augmented as the grayscale recipe augments Fashion-MNIST.
    "luminance": replace(
        _GRAYSCALE,
        name="luminance",
        channels=3,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        padding_mode="border",
        grayscale_p=1.0,
        eval_grayscale=True,
        grayscale_first=True,
    ),
    "grayscale": _GRAYSCALE,
    "digits": Recipe(
        name="digits",
        channels=1,
        mean=(0.5,),
        std=(0.5,),
        geometry="affine",
        padding_mode="zeros",  # digits are drawn on a black background
        rotation_deg=12.0,
        scale_range=(0.9, 1.1),
        shear_deg=8.0,
        translate_px=1.0,
        jitter=(("contrast", 0.7, 1.3), ("shift", -0.1, 0.1)),
        jitter_p=1.0,
        jitter_random_order=False,
        noise_std=0.05,
    ),
}


def get_recipe(name: str) -> Recipe:
    try:
        return _RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown augmentation recipe {name!r}; valid recipes: {', '.join(RECIPES)}") from None


# --------------------------------------------------------------------------------------
# Photometric operations on float batches in [0, 1]; `factor` has one value per sample.
# Formulas follow torchvision.transforms.v2.functional so results match it (tested).
# They work IN PLACE on `img`, a buffer the caller owns (BatchAugment.apply only passes
# its own intermediate images), and return it: fewer fresh buffers per batch.
# --------------------------------------------------------------------------------------


def _per_sample(factor: Tensor) -> Tensor:
    return factor.view(-1, 1, 1, 1)


def _luminance(img: Tensor) -> Tensor:
    """B x 1 x H x W grayscale (a new tensor); one-channel input is returned as is."""
    if img.shape[1] == 1:
        return img
    r, g, b = img.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _blend_(img: Tensor, other: Tensor | None, factor: Tensor) -> Tensor:
    """f * img + (1 - f) * other, clamped to [0, 1], in place; other=None means 0.
    `other` (B x 1 x ...) is a scratch tensor: it is overwritten."""
    f = _per_sample(factor)
    img.mul_(f)
    if other is not None:
        img.add_(other.mul_(1.0 - f))
    return img.clamp_(0.0, 1.0)


def _adjust_brightness(img: Tensor, factor: Tensor) -> Tensor:
    return _blend_(img, None, factor)


def _adjust_contrast(img: Tensor, factor: Tensor) -> Tensor:
    mean = _luminance(img).mean(dim=(1, 2, 3), keepdim=True)
    return _blend_(img, mean, factor)


def _adjust_saturation(img: Tensor, factor: Tensor) -> Tensor:
    gray = _luminance(img)
    return _blend_(img, gray if gray is not img else gray.clone(), factor)


def _blend_stage_(img: Tensor, factor: Tensor, w_mean: Tensor | None, w_lum: Tensor | None) -> Tensor:
    """brightness, contrast or saturation per sample, in one blend: f * img + (1 - f) *
    (w_mean * mean gray + w_lum * gray), with 0 / 1 weights per sample (None: all 0). With
    exact 0 / 1 weights this equals, bit for bit, the single operation each sample selects."""
    other = None
    if w_mean is not None or w_lum is not None:
        gray = _luminance(img)  # B x 1 x H x W
        if w_lum is not None:
            other = gray * _per_sample(w_lum)
        if w_mean is not None:
            mean = gray.mean(dim=(1, 2, 3), keepdim=True).mul_(_per_sample(w_mean))
            other = mean if other is None else other.add_(mean)
    return _blend_(img, other, factor)


def _shift_brightness(img: Tensor, shift: Tensor) -> Tensor:
    return img.add_(_per_sample(shift)).clamp_(0.0, 1.0)


def _adjust_hue(img: Tensor, factor: Tensor, out: Tensor | None = None) -> Tensor:
    """torchvision's adjust_hue (RGB -> HSV, shift H, HSV -> RGB) in closed form.

    With v = max, delta = max - min and the hue in sextants h6 (one unit = 60 deg), the
    HSV -> RGB map gives channel n in (5, 3, 1) for (R, G, B) as
    v - delta * clamp(min(k, 4 - k), 0, 1) with k = (n + h6 + 6 * factor) mod 6
    (v * s = delta). Branch-free, one modulo, no division for s; gray pixels (delta = 0)
    keep their value whatever their hue. Writes into `out` (default: `img` itself)."""
    r, g, b = img.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = maxc - torch.minimum(torch.minimum(r, g), b)
    inv = torch.where(delta == 0, 1.0, delta).reciprocal_()
    h6 = torch.where(maxc == r, (g - b).mul_(inv),
                     torch.where(maxc == g, (b - r).mul_(inv).add_(2.0), (r - g).mul_(inv).add_(4.0)))
    h6.add_(6.0 * factor.view(-1, 1, 1))
    k = torch.stack((h6 + 5.0, h6 + 3.0, h6 + 1.0), dim=1)  # n = 5, 3, 1 for R, G, B
    k.sub_(torch.floor(k * (1.0 / 6.0)).mul_(6.0))  # mod 6 (exactness at the wrap is moot: c is 0 there)
    c = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0).mul_(delta.unsqueeze(1))
    return torch.sub(maxc.unsqueeze(1), c, out=img if out is None else out)  # r, g, b are not read after this


_JITTER_OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "brightness": _adjust_brightness,
    "contrast": _adjust_contrast,
    "saturation": _adjust_saturation,
    "hue": _adjust_hue,
    "shift": _shift_brightness,
}
_COLOUR_ONLY = {"saturation", "hue"}
_BLENDS = ("brightness", "contrast", "saturation")  # f * img + (1 - f) * (0 | mean gray | gray)


def blur_kernel_size(image_size: int) -> int:
    """Odd Gaussian kernel size, about 10% of the image (SimCLR / MoCo v2 convention)."""
    k = int(0.1 * image_size)
    return k + 1 if k % 2 == 0 else k


def _gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """B x size normalised 1-D Gaussian kernels (torchvision's: unit-spaced, truncated)."""
    x = torch.arange(size, dtype=torch.float32, device=sigma.device) - (size - 1) / 2
    w = torch.exp(-0.5 * (x / sigma.float().view(-1, 1)) ** 2)
    return w / w.sum(dim=1, keepdim=True)


def _blur(img: Tensor, kernels: Tensor) -> Tensor:
    """Separable blur with one kernel per sample: channels of all samples become the
    groups of one depthwise convolution, so no loop over samples is needed."""
    b, c, h, w = img.shape
    size = kernels.shape[1]
    weight = kernels.to(img.dtype).repeat_interleave(c, dim=0)  # (B*C) x size
    out = F.pad(img.reshape(1, b * c, h, w), (size // 2,) * 4, mode="reflect")
    out = F.conv2d(out, weight.view(b * c, 1, 1, size), groups=b * c)
    out = F.conv2d(out, weight.view(b * c, 1, size, 1), groups=b * c)
    return out.view(b, c, h, w)


# --------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------


class _RecipeModule(nn.Module):
    """Input checks and normalisation shared by the augmented and the eval path."""

    def __init__(self, recipe: str, image_size: int, channels: int) -> None:
        super().__init__()
        spec = get_recipe(recipe)
        if channels != spec.channels:
            raise ValueError(
                f"augmentation recipe {recipe!r} is for {spec.channels}-channel images, got channels={channels}"
                f" (recipes: mocov2, strong_color, luminance = 3 channels; grayscale, digits = 1 channel)"
            )
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.recipe = spec
        self.image_size = image_size
        self.channels = channels
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"recipe={self.recipe.name!r}, image_size={self.image_size}, channels={self.channels}"

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected a uint8 batch B x C x H x W, got {shape}")
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 batch (values 0..255), got dtype {x.dtype}")
        if x.shape[1] != self.channels:
            hint = ""
            if x.shape[-1] == self.channels:
                hint = "; it looks channels-last (B x H x W x C): use x.permute(0, 3, 1, 2)"
            raise ValueError(
                f"recipe {self.recipe.name!r} expects {self.channels}-channel batches B x {self.channels} x H x W,"
                f" got shape {tuple(x.shape)}{hint}"
            )

    def _normalise_(self, img: Tensor) -> Tensor:
        """(img - mean) / std, in place on `img` (a buffer the caller owns). The constants
        are buffers that move with the module, so no tensor is built from host data here."""
        mean, std = self.mean, self.std
        if mean.device != img.device:  # a module left on another device than its input
            mean, std = mean.to(img.device), std.to(img.device)
        return img.sub_(mean).div_(std)


class EvalTransform(_RecipeModule):
    """The un-augmented path: uint8 -> [0, 1] -> (resize to image_size if needed) ->
    (centred crop, resized back, when ``crop`` < 1) -> normalise.

    ``crop`` (the `eval_crop` setting; ours, issue 10) is the side of a centred square crop
    as a fraction of the image's side, resampled (bilinear) to ``image_size``: 1 is the
    whole image, the paper's un-augmented input. Below 1 it enlarges the object as the
    training views' crops do on average (a RandomResizedCrop of area scale s has sides
    whose geometric mean is sqrt(s) of the image's), so the images the head labels and
    the features are read from look like the views it was trained on."""

    def __init__(self, recipe: str, image_size: int, channels: int, crop: float = 1.0) -> None:
        super().__init__(recipe, image_size, channels)
        if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0.0 < crop <= 1.0:
            raise ValueError(f"eval crop must be a fraction of the image side in (0, 1], got {crop!r} (1 = whole image)")
        self.crop = float(crop)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.crop == 1.0 else f", crop={self.crop}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        img = x.to(torch.float32).div_(255.0)
        if img.shape[-2:] != (self.image_size, self.image_size):
            img = F.interpolate(
                img, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        if self.recipe.eval_grayscale and img.shape[1] > 1:
            img = _luminance(img).expand(-1, img.shape[1], -1, -1).contiguous()
        if self.crop < 1.0:
            # theta = crop * identity maps the output's [-1, 1] onto the centred box; the
            # sample points stay inside the image, so the padding is never read
            theta = torch.zeros(len(img), 2, 3, dtype=img.dtype, device=img.device)
            theta[:, 0, 0] = theta[:, 1, 1] = self.crop
            grid = F.affine_grid(theta, list(img.shape), align_corners=False)
            img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return self._normalise_(img)


class BatchAugment(_RecipeModule):
    """uint8 ``B x C x H x W`` -> normalised float32 ``B x C x S x S`` (S = image_size),
    with independent random parameters for every sample (see the module docstring).

    ``sample_params`` returns a dict of CPU tensors, one row per sample:

    crop geometry    ``crop`` (B x 4: x0, y0, w, h as fractions of the input's width and
                     height, top-left origin), ``flip`` (bool)
    affine geometry  ``angle`` (degrees, positive = counter-clockwise as displayed),
                     ``shear`` (degrees, x-shear), ``scale``, ``translate`` (B x 2: x, y in
                     output pixels, positive = content moves right / down)
    jitter           ``jitter`` (bool: applied at all), one factor per operation named in
                     the recipe (``brightness``, ``contrast``, ``saturation``, ``hue``,
                     ``shift``) and, for a random order, ``jitter_order`` (B x n_ops
                     permutation of the operations' indices)
    other            ``grayscale`` (bool), ``blur`` (bool) + ``blur_sigma``, ``noise``
                     (B x C x S x S standard normal, scaled by the recipe's std)
    """

    def __init__(self, recipe: str, image_size: int, channels: int) -> None:
        super().__init__(recipe, image_size, channels)
        spec = self.recipe
        for op, _, _ in spec.jitter:
            if op not in _JITTER_OPS or (op in _COLOUR_ONLY and channels != 3):
                raise ValueError(f"jitter operation {op!r} is not available for {channels}-channel images")
        self.jitter_ops = tuple(op for op, _, _ in spec.jitter)
        # Blur only for large images (MoCo v2 blurs 224 px ImageNet crops; SimCLR drops it for CIFAR).
        self.blur_size = blur_kernel_size(image_size) if spec.blur_p > 0 and image_size >= spec.blur_min_size else 0

    # ---- parameters ------------------------------------------------------------------

    def param_keys(self) -> tuple[str, ...]:
        """The keys `sample_params` returns (and `apply` requires) for this recipe."""
        spec = self.recipe
        keys = ["crop", "flip"] if spec.geometry == "crop" else ["angle", "scale", "shear", "translate"]
        if spec.jitter:
            keys += ["jitter", *self.jitter_ops] + (["jitter_order"] if spec.jitter_random_order else [])
        if spec.grayscale_p > 0:
            keys.append("grayscale")
        if self.blur_size:
            keys += ["blur", "blur_sigma"]
        if spec.noise_std > 0:
            keys.append("noise")
        return tuple(keys)

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Draw one set of parameters per sample on the CPU (always the same number of
        draws, in the same order, for a given recipe / image size / batch size)."""
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"pass a CPU torch.Generator (parameters are drawn on the CPU), got {generator.device}")
        spec, n = self.recipe, batch_size

        def uniform(low: float, high: float, *shape: int) -> Tensor:
            return low + (high - low) * torch.rand(n, *shape, generator=generator)

        def bernoulli(p: float) -> Tensor:
            return torch.rand(n, generator=generator) < p

        params: dict[str, Tensor] = {}
        if spec.geometry == "crop":
            params["crop"] = self._sample_crop(n, generator)
            params["flip"] = bernoulli(spec.flip_p)
        else:
            params["angle"] = uniform(-spec.rotation_deg, spec.rotation_deg)
            params["scale"] = uniform(*spec.scale_range)
            params["shear"] = uniform(-spec.shear_deg, spec.shear_deg)
            params["translate"] = uniform(-spec.translate_px, spec.translate_px, 2)
        if spec.jitter:
            params["jitter"] = bernoulli(spec.jitter_p)
            for op, low, high in spec.jitter:
                params[op] = uniform(low, high)
            if spec.jitter_random_order:
                params["jitter_order"] = torch.rand(n, len(spec.jitter), generator=generator).argsort(dim=1)
        if spec.grayscale_p > 0:
            params["grayscale"] = bernoulli(spec.grayscale_p)
        if self.blur_size:
            params["blur"] = bernoulli(spec.blur_p)
            params["blur_sigma"] = uniform(*spec.blur_sigma)
        if spec.noise_std > 0:
            params["noise"] = torch.randn(n, self.channels, self.image_size, self.image_size, generator=generator)
        return params

    def _sample_crop(self, n: int, generator: torch.Generator | None) -> Tensor:
        """RandomResizedCrop boxes, vectorised: `crop_tries` candidates per sample, the
        first one that fits inside the image wins, else the whole image."""
        spec, tries = self.recipe, self.recipe.crop_tries
        lo, hi = spec.crop_scale
        log_lo, log_hi = math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1])
        area = lo + (hi - lo) * torch.rand(n, tries, generator=generator)
        ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, tries, generator=generator))
        w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
        fits = (w <= 1.0) & (h <= 1.0)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting try
        any_fit = fits.any(dim=1)
        one = torch.ones(n)
        w = torch.where(any_fit, w.gather(1, first).squeeze(1), one)
        h = torch.where(any_fit, h.gather(1, first).squeeze(1), one)
        x0 = torch.rand(n, generator=generator) * (1.0 - w)
        y0 = torch.rand(n, generator=generator) * (1.0 - h)
        return torch.stack((x0, y0, w, h), dim=1)

    def theta(self, params: dict[str, Tensor]) -> Tensor:
        """B x 2 x 3 matrices for ``F.affine_grid(..., align_corners=False)``: they map
        output coordinates to input coordinates, both in [-1, 1] with -1 / +1 on the outer
        *edges* of the edge pixels, so the identity matrix reproduces the input exactly."""
        if self.recipe.geometry == "crop":
            x0, y0, w, h = params["crop"].float().unbind(1)
            sx = torch.where(params["flip"], -w, w)  # a flip mirrors the crop about its centre
            zero = torch.zeros_like(w)
            return torch.stack(
                (torch.stack((sx, zero, 2 * x0 + w - 1), 1), torch.stack((zero, h, 2 * y0 + h - 1), 1)), 1
            )
        # Forward content map p_out = A p_in + t with A = scale * R(angle) @ Shear_x(shear),
        # in (x right, y down) coordinates; affine_grid needs the inverse: p_in = A^-1 (p_out - t).
        # The angle is negated so that a positive angle turns the content counter-clockwise
        # as displayed, like torchvision's rotate.
        a = -torch.deg2rad(params["angle"].float())
        tan = torch.tan(torch.deg2rad(params["shear"].float()))
        s = params["scale"].float()
        cos, sin = torch.cos(a), torch.sin(a)
        a11, a12, a21, a22 = s * cos, s * (cos * tan - sin), s * sin, s * (sin * tan + cos)
        det = a11 * a22 - a12 * a21  # = s^2
        i11, i12, i21, i22 = a22 / det, -a12 / det, -a21 / det, a11 / det
        t = params["translate"].float() * (2.0 / self.image_size)  # 1 output pixel = 2 / S
        tx, ty = t.unbind(1)
        return torch.stack(
            (
                torch.stack((i11, i12, -(i11 * tx + i12 * ty)), 1),
                torch.stack((i21, i22, -(i21 * tx + i22 * ty)), 1),
            ),
            1,
        )

    # ---- parameters as the device needs them ----------------------------------------

    def device_params(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """What `apply_device` reads, derived from one view's `sample_params` where those
        live (the CPU, normally): a dict of float32 tensors with one row per sample and
        shapes fixed by the recipe, image size and batch size alone, so a whole epoch of
        them can cross to the device in one copy (`draw`) and the device work has the same
        shapes at every step (no row groups whose size varies with the draws).

        theta        B x 6: the sampling grid's affine matrices (`theta`, row-major)
        crop         B x 4: the crop boxes (crop geometry; the grid is clamped to them)
        f{k}_{op}    B: factor of jitter operation `op` (shift, hue) at stage k: the
                     sample's own factor where its order puts `op` k-th (and jitter
                     applies), else 0
        m{k}_hue     B, 0 / 1: the samples that get the hue rotation at stage k (the
                     rotation is no exact identity at factor 0, so it is selected instead)
        b{k}_f, b{k}_mean, b{k}_lum   B: the stage's blend (brightness, contrast and
                     saturation in one): factor, and 0 / 1 weights of the mean luminance
                     (contrast) and of the luminance (saturation) in what is blended in
        gray         B, 0 / 1: RandomGrayscale
        blur         B x size: Gaussian kernels, the identity kernel where not blurred
        noise        B x C x S x S: additive noise, already scaled by the recipe's std
        """
        spec = self.recipe
        out: dict[str, Tensor] = {"theta": self.theta(params).reshape(-1, 6)}
        if spec.geometry == "crop":
            out["crop"] = params["crop"].float()
        if spec.jitter:
            applied = params["jitter"]
            order = params["jitter_order"] if spec.jitter_random_order else None
            for k, stage in enumerate(self._stages()):
                sel = {op: applied if order is None else applied & (order[:, k] == self.jitter_ops.index(op))
                       for op in stage}
                blends = [op for op in stage if op in _BLENDS]
                if blends:  # at most one of them is selected per sample; none: factor 1
                    f = torch.ones(len(applied))
                    for op in blends:
                        f = torch.where(sel[op], params[op], f)
                    out[f"b{k}_f"] = f
                    if "contrast" in blends:
                        out[f"b{k}_mean"] = sel["contrast"].float()
                    if "saturation" in blends:
                        out[f"b{k}_lum"] = sel["saturation"].float()
                if "shift" in stage:
                    out[f"f{k}_shift"] = torch.where(sel["shift"], params["shift"], 0.0).float()
                if "hue" in stage:
                    out[f"f{k}_hue"] = torch.where(sel["hue"], params["hue"], 0.0).float()
                    out[f"m{k}_hue"] = sel["hue"].float()
        if spec.grayscale_p > 0:
            out["gray"] = params["grayscale"].float()
        if self.blur_size:
            kernels = _gaussian_kernels(params["blur_sigma"], self.blur_size)
            delta = torch.zeros_like(kernels)
            delta[:, self.blur_size // 2] = 1.0  # identity kernel for samples not blurred
            out["blur"] = torch.where(params["blur"].view(-1, 1), kernels, delta)
        if spec.noise_std > 0:
            out["noise"] = spec.noise_std * params["noise"].float()
        return out

    def _stages(self) -> list[tuple[str, ...]]:
        """The jitter stages: with a random order every operation may come at any stage,
        so each stage runs all of them (identity factors for the samples that do not use
        it there); with a fixed order stage k is operation k alone."""
        if not self.recipe.jitter:
            return []
        if self.recipe.jitter_random_order:
            return [self.jitter_ops] * len(self.jitter_ops)
        return [(op,) for op in self.jitter_ops]

    def draw(self, steps: int, batch_size: int, generator: torch.Generator | None, device,
             views: int = 2) -> list[tuple[dict[str, Tensor], ...]]:
        """Parameters of `steps` steps x `views` views, drawn in that order (step 0's views
        first, as `forward` called view by view would draw them), moved to `device` in ONE
        copy (from pinned memory on CUDA, without blocking the host)."""
        dicts = [self.device_params(self.sample_params(batch_size, generator)) for _ in range(steps * views)]
        flat, layout = pack_params(dicts)
        device = torch.device(device)
        if device.type == "cuda":
            flat = flat.pin_memory()
        flat = flat.to(device, non_blocking=True)
        per_view = unpack_params(flat, layout, steps * views)
        return [tuple(per_view[s * views : (s + 1) * views]) for s in range(steps)]

    def param_bytes(self, batch_size: int) -> int:
        """Bytes of one view's `device_params` (to size how many steps `draw` takes at once)."""
        probe = self.device_params(self.sample_params(batch_size, torch.Generator().manual_seed(0)))
        return 4 * sum(v.numel() for v in probe.values())

    # ---- application -----------------------------------------------------------------

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self._check_input(x)
        return self.apply(x, self.sample_params(x.shape[0], generator))

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Apply given per-sample parameters (from `sample_params`) to a uint8 batch."""
        self._check_input(x)
        self._check_params(params, x.shape[0])
        b, c = x.shape[:2]
        if b == 0:
            return torch.empty(0, c, self.image_size, self.image_size, dtype=torch.float32, device=x.device)
        flat, layout = pack_params([self.device_params(params)])
        return self.apply_device(x, unpack_params(flat.to(x.device), layout, 1)[0])

    def apply_device(self, x: Tensor, dp: dict[str, Tensor]) -> Tensor:
        """Apply `device_params` (on x's device) to a uint8 batch: fixed-shape tensor work
        only - no value is read on the host, no tensor is built from host data."""
        return self._normalise_(self._photometric_(self._geometry(x, dp), dp))

    def _geometry(self, x: Tensor, dp: dict[str, Tensor]) -> Tensor:
        """uint8 B x C x H x W -> float B x C x S x S in [0, 1]: crop / affine, resize, flip."""
        spec, size = self.recipe, self.image_size
        b, c, in_h, in_w = x.shape
        device = x.device
        img = x.to(torch.float32).div_(255.0)

        # Geometry: one sampling grid + grid_sample for the whole batch. The grid is
        # F.affine_grid's (align_corners=False: output pixel centres at (2j + 1) / S - 1),
        # built by broadcasting rather than a batched matmul.
        t = dp["theta"].view(b, 6, 1, 1).unbind(1)
        centres = torch.arange(size, dtype=torch.float32, device=device).mul_(2.0 / size).add_(1.0 / size - 1.0)
        xs, ys = centres.view(1, 1, size), centres.view(1, size, 1)
        if spec.geometry == "crop":
            # Axis-aligned: x depends on the column only, y on the row only (theta's
            # off-diagonal terms are 0), so both are computed on one line and broadcast.
            # Keep sample points between the outermost pixel centres of the crop box, as
            # torchvision's resize of the cropped image does; padding is then never read.
            x0, y0, w, h = dp["crop"].unbind(1)
            gx = (t[0] * xs).add_(t[2]).clamp_(_lo(x0, in_w), _hi(x0 + w, in_w)).expand(b, size, size)
            gy = (t[4] * ys).add_(t[5]).clamp_(_lo(y0, in_h), _hi(y0 + h, in_h)).expand(b, size, size)
        else:
            gx = (t[0] * xs + t[1] * ys).add_(t[2])
            gy = (t[3] * xs + t[4] * ys).add_(t[5])
        grid = torch.stack((gx, gy), dim=-1)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode=spec.padding_mode, align_corners=False)

    def _photometric_(self, img: Tensor, dp: dict[str, Tensor]) -> Tensor:
        """Colour jitter, grayscale, blur and noise on a float batch in [0, 1] (in place
        where it can: `img` is a buffer the caller owns)."""
        spec, c = self.recipe, img.shape[1]
        # Colour jitter, per-sample order: stage k applies to each sample the operation its
        # order puts k-th. The three blends (brightness, contrast, saturation) are one
        # blend per stage, f * img + (1 - f) * (w_mean * mean + w_lum * gray), with each
        # sample's own f and 0 / 1 weights (exact: 1 * a + 0 * b = a, and f = 1 leaves a
        # value in [0, 1] as it is); a shift uses 0 where not selected; the hue rotation is
        # computed for the batch and selected per sample. Shapes never depend on the draws.
        gray_first = spec.grayscale_p > 0 and spec.grayscale_first  # (luminance recipe)
        if gray_first:
            img = torch.where(_per_sample(dp["gray"]) > 0.5, _luminance(img).expand(-1, c, -1, -1), img)
        for k, stage in enumerate(self._stages()):
            if f"b{k}_f" in dp:
                img = _blend_stage_(img, dp[f"b{k}_f"], dp.get(f"b{k}_mean"), dp.get(f"b{k}_lum"))
            if "shift" in stage:
                img = _shift_brightness(img, dp[f"f{k}_shift"])
            if "hue" in stage:
                hued = _adjust_hue(img, dp[f"f{k}_hue"], out=torch.empty_like(img))
                img = torch.where(_per_sample(dp[f"m{k}_hue"]) > 0.5, hued, img)

        if spec.grayscale_p > 0 and not gray_first:
            img = torch.where(_per_sample(dp["gray"]) > 0.5, _luminance(img).expand(-1, c, -1, -1), img)

        if self.blur_size:
            img = _blur(img, dp["blur"])

        if spec.noise_std > 0:
            img = img.add_(dp["noise"].to(img.dtype)).clamp_(0.0, 1.0)
        return img

    def _check_params(self, params: dict[str, Tensor], batch_size: int) -> None:
        expected = self.param_keys()
        missing = sorted(set(expected) - set(params))
        if missing:
            raise ValueError(f"augmentation parameters for recipe {self.recipe.name!r} lack {missing}")
        for key in expected:
            if params[key].shape[0] != batch_size:
                raise ValueError(
                    f"parameter {key!r} has {params[key].shape[0]} rows for a batch of {batch_size} images"
                )


def _lo(edge: Tensor, pixels: int) -> Tensor:
    """Normalised coordinate of the first pixel centre inside a box edge (fraction)."""
    return (2.0 * edge - 1.0 + 1.0 / pixels).view(-1, 1, 1)


def _hi(edge: Tensor, pixels: int) -> Tensor:
    return (2.0 * edge - 1.0 - 1.0 / pixels).view(-1, 1, 1)


def pack_params(dicts: list[dict[str, Tensor]]) -> tuple[Tensor, list[tuple[str, torch.Size]]]:
    """Many views' `device_params` (same keys and shapes) as ONE flat float32 tensor plus
    its layout, so that they cross to the device in a single copy."""
    layout = [(k, v.shape) for k, v in dicts[0].items()]
    flat = torch.cat([d[k].reshape(-1).to(torch.float32) for d in dicts for k, _ in layout])
    return flat, layout


def unpack_params(flat: Tensor, layout: list[tuple[str, torch.Size]], count: int) -> list[dict[str, Tensor]]:
    """The inverse of `pack_params`: `count` dicts of views into `flat` (no copy)."""
    sizes = [math.prod(shape) for _, shape in layout]
    parts = flat.split(sizes * count)
    return [{k: parts[i * len(layout) + j].view(shape) for j, (k, shape) in enumerate(layout)}
            for i in range(count)]


def build_augment(recipe: str, image_size: int, channels: int) -> BatchAugment:
    """The training-time augmentation of `recipe` (one of RECIPES)."""
    return BatchAugment(recipe, image_size, channels)


def build_eval_transform(recipe: str, image_size: int, channels: int, crop: float = 1.0) -> EvalTransform:
    """The un-augmented path of `recipe`: the same normalisation, no randomness; `crop` < 1
    takes a centred crop of that side fraction (the `eval_crop` setting)."""
    return EvalTransform(recipe, image_size, channels, crop)
