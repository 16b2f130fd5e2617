"""Tests for scl.augment: per-sample batched augmentation."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from scl.augment import blur_kernel_size, build_augment, build_eval_transform

# (recipe, image_size, channels) combinations the project uses; mocov2 at 64 exercises blur.
CASES = [("mocov2", 32, 3), ("mocov2", 64, 3), ("luminance", 32, 3), ("grayscale", 28, 1), ("digits", 8, 1)]
CASE_IDS = [f"{r}-{s}" for r, s, _ in CASES]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random images: a coarse random pattern upsampled, so crops, blur and
    shifts all change the result visibly."""
    g = gen(seed)
    coarse = torch.rand(batch, channels, max(2, size // 4), max(2, size // 4), generator=g)
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (fine * 255).round().to(torch.uint8)


def denormalise(y: torch.Tensor, aug) -> torch.Tensor:
    mean = torch.tensor(aug.recipe.mean).view(1, -1, 1, 1)
    std = torch.tensor(aug.recipe.std).view(1, -1, 1, 1)
    return y * std + mean


def neutral_params(aug, batch: int) -> dict[str, torch.Tensor]:
    """Parameters that leave the image unchanged (whole-image crop, no flip, no jitter...)."""
    p = aug.sample_params(batch, gen(0))
    if "crop" in p:
        p["crop"] = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(batch, 1)
        p["flip"] = torch.zeros(batch, dtype=torch.bool)
    else:
        p["angle"] = torch.zeros(batch)
        p["shear"] = torch.zeros(batch)
        p["scale"] = torch.ones(batch)
        p["translate"] = torch.zeros(batch, 2)
    for key in ("jitter", "grayscale", "blur"):
        if key in p:
            p[key] = torch.zeros(batch, dtype=torch.bool)
    if aug.recipe.eval_grayscale:  # the eval path of such a recipe is the luminance: neutral = grayscale on
        p["grayscale"] = torch.ones(batch, dtype=torch.bool)
    if "noise" in p:
        p["noise"] = torch.zeros_like(p["noise"])
    return p


# ---------------------------------------------------------------------------------------
# Output contract
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("batch", [1, 5])
def test_output_dtype_shape_finite_and_range(recipe, size, channels, batch):
    aug = build_augment(recipe, size, channels)
    with torch.no_grad():
        y = aug(images(batch, channels, size), gen(1))
    assert y.dtype == torch.float32
    assert y.shape == (batch, channels, size, size)
    assert torch.isfinite(y).all()
    z = denormalise(y, aug)
    assert z.min() >= -1e-5 and z.max() <= 1 + 1e-5


def test_output_size_is_image_size_for_larger_input():
    aug = build_augment("mocov2", 32, 3)
    y = aug(images(3, 3, 48), gen(0))
    assert y.shape == (3, 3, 32, 32)
    assert build_eval_transform("mocov2", 32, 3)(images(3, 3, 48)).shape == (3, 3, 32, 32)


def test_eval_transform_values():
    x = torch.tensor([0, 51, 102, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    rgb = torch.cat([x, x, x], dim=1)
    y = build_eval_transform("mocov2", 2, 3)(rgb)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for c in range(3):
        expected = torch.tensor([[0.0, 0.2], [0.4, 1.0]]).sub(mean[c]).div(std[c])
        torch.testing.assert_close(y[0, c], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        build_eval_transform("digits", 2, 1)(x)[0, 0], torch.tensor([[-1.0, -0.6], [-0.2, 1.0]]), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        build_eval_transform("grayscale", 2, 1)(x)[0, 0],
        (torch.tensor([[0.0, 0.2], [0.4, 1.0]]) - 0.286) / 0.353,
        rtol=0,
        atol=1e-5,
    )


def test_eval_crop_resamples_the_centred_box_by_hand():
    # A 4 x 4 horizontal ramp (columns 0, 40, 80, 120). crop 0.5: the output's pixel centres
    # (-0.75, -0.25, 0.25, 0.75 in [-1, 1]) map to 0.5x that, i.e. input columns 0.75, 1.25,
    # 1.75, 2.25 (align_corners=False: column = (g + 1) * 4 / 2 - 0.5): bilinear values 30, 50, 70, 90.
    ramp = torch.tensor([0, 40, 80, 120], dtype=torch.uint8).repeat(4, 1).view(1, 1, 4, 4)
    y = build_eval_transform("digits", 4, 1, crop=0.5)(ramp)[0, 0]
    expected = (torch.tensor([30.0, 50.0, 70.0, 90.0]) / 255 - 0.5) / 0.5
    torch.testing.assert_close(y, expected.repeat(4, 1), rtol=0, atol=1e-5)
    # crop 1 is the whole image, as before the setting existed
    torch.testing.assert_close(build_eval_transform("digits", 4, 1, crop=1.0)(ramp), build_eval_transform("digits", 4, 1)(ramp))


def test_eval_crop_enlarges_a_centred_object_by_one_over_crop():
    x = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    x[..., 10:18, 10:18] = 255  # an 8 x 8 square in the middle
    y = build_eval_transform("grayscale", 28, 1, crop=0.5)(x)
    lit = (y[0, 0] > (0.5 - 0.286) / 0.353).sum().item()  # pixels above half brightness
    assert lit == 16 * 16  # 8 / 0.5 = 16 pixels a side


@pytest.mark.parametrize("crop", [0.0, -0.1, 1.5, True, "0.8"])
def test_eval_crop_outside_0_1_is_a_clear_error(crop):
    with pytest.raises(ValueError, match=r"eval crop must be a fraction of the image side in \(0, 1\]"):
        build_eval_transform("grayscale", 28, 1, crop=crop)


# ---------------------------------------------------------------------------------------
# Randomness: per sample, reproducible
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
def test_each_sample_gets_its_own_parameters(recipe, size, channels):
    # The torchvision-v2 pitfall: a transform on a batch tensor draws one parameter set
    # for the whole batch. Here the same image repeated must give distinct views.
    batch = 64 if size < 64 else 16
    x = images(1, channels, size).repeat(batch, 1, 1, 1)
    y = build_augment(recipe, size, channels)(x, gen(2)).flatten(1)
    dist = torch.cdist(y, y)
    off_diagonal = dist[~torch.eye(batch, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all()


@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
def test_same_seed_same_output_different_seed_different(recipe, size, channels):
    aug = build_augment(recipe, size, channels)
    x = images(8, channels, size)
    a, b, c = aug(x, gen(7)), aug(x, gen(7)), aug(x, gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # forward is exactly apply(x, sample_params(...)), and apply is a pure function.
    params = aug.sample_params(8, gen(7))
    assert torch.equal(aug.apply(x, params), a)
    assert torch.equal(aug.apply(x, params), aug.apply(x, params))


def test_default_generator_is_used_without_one():
    aug = build_augment("mocov2", 32, 3)
    x = images(4, 3, 32)
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    assert torch.equal(a, aug(x))


# ---------------------------------------------------------------------------------------
# Parameter distributions
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("recipe", "size", "channels", "scale"), [("mocov2", 64, 3, 0.2), ("grayscale", 28, 1, 0.5)])
def test_crop_and_probability_statistics(recipe, size, channels, scale):
    aug = build_augment(recipe, size, channels)
    n = 4000
    p = aug.sample_params(n, gen(4))
    x0, y0, w, h = p["crop"].unbind(1)
    eps = 1e-6
    area, ratio = w * h, w / h  # fractions of the (square) image
    assert (area >= scale - eps).all() and (area <= 1 + eps).all()
    assert (ratio >= 3 / 4 - eps).all() and (ratio <= 4 / 3 + eps).all()
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 1 + eps).all() and (y0 + h <= 1 + eps).all()
    # Uniform area / log-ratio: the spread must reach both ends of the ranges.
    assert area.min() < scale + 0.02 and area.max() > 0.97
    assert ratio.min() < 0.77 and ratio.max() > 1.3
    assert abs(p["flip"].float().mean().item() - 0.5) < 0.05
    assert abs(p["jitter"].float().mean().item() - 0.8) < 0.03
    assert p["brightness"].min() >= 0.6 and p["brightness"].max() <= 1.4
    assert p["contrast"].min() >= 0.6 and p["contrast"].max() <= 1.4
    if recipe == "mocov2":
        assert abs(p["grayscale"].float().mean().item() - 0.2) < 0.03
        assert abs(p["blur"].float().mean().item() - 0.5) < 0.05
        assert p["blur_sigma"].min() >= 0.1 and p["blur_sigma"].max() <= 2.0
        assert p["hue"].abs().max() <= 0.1 and p["saturation"].min() >= 0.6 and p["saturation"].max() <= 1.4
        # Every sample has a permutation of the four jitter operations, in varied orders.
        order = p["jitter_order"]
        assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(n, 4))
        assert len({tuple(row) for row in order.tolist()}) == 24


def test_digits_parameter_ranges_and_no_flip():
    aug = build_augment("digits", 8, 1)
    p = aug.sample_params(2000, gen(5))
    assert "flip" not in p and "crop" not in p
    assert p["angle"].abs().max() <= 12 and p["angle"].abs().max() > 11
    assert p["shear"].abs().max() <= 8
    assert p["scale"].min() >= 0.9 and p["scale"].max() <= 1.1
    assert p["translate"].abs().max() <= 1
    assert p["contrast"].min() >= 0.7 and p["contrast"].max() <= 1.3
    assert p["shift"].abs().max() <= 0.1
    assert p["jitter"].all()


# ---------------------------------------------------------------------------------------
# Geometry conventions
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
def test_neutral_parameters_reproduce_the_eval_transform(recipe, size, channels):
    # Identity theta with align_corners=False samples exactly at the pixel centres.
    aug = build_augment(recipe, size, channels)
    x = images(4, channels, size)
    expected = build_eval_transform(recipe, size, channels)(x)
    torch.testing.assert_close(aug.apply(x, neutral_params(aug, 4)), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("recipe", "size", "channels"), [("mocov2", 32, 3), ("grayscale", 28, 1)])
def test_flip_only_equals_flipped_eval(recipe, size, channels):
    aug = build_augment(recipe, size, channels)
    x = images(4, channels, size)
    p = neutral_params(aug, 4)
    p["flip"] = torch.tensor([True, False, True, False])
    y = aug.apply(x, p)
    expected = build_eval_transform(recipe, size, channels)(x)
    torch.testing.assert_close(y[0::2], torch.flip(expected[0::2], dims=[-1]), rtol=0, atol=1e-4)
    torch.testing.assert_close(y[1::2], expected[1::2], rtol=0, atol=1e-4)


def test_whole_pixel_crop_matches_torchvision_resized_crop():
    size = 32
    aug = build_augment("mocov2", size, 3)
    x = images(2, 3, size)
    top, left, height, width = 8, 4, 20, 16
    p = neutral_params(aug, 2)
    p["crop"] = torch.tensor([[left / size, top / size, width / size, height / size]]).repeat(2, 1)
    p["flip"] = torch.tensor([False, True])
    y = denormalise(aug.apply(x, p), aug)
    ref = TF.resized_crop(x.float() / 255, top, left, height, width, [size, size], antialias=True)
    torch.testing.assert_close(y[0], ref[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(y[1], TF.horizontal_flip(ref[1]), rtol=0, atol=1e-4)


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (0, 1), (-1, 0)])
def test_digits_one_pixel_translation_is_a_one_pixel_shift(dx, dy):
    aug = build_augment("digits", 8, 1)
    x = images(3, 1, 8)
    p = neutral_params(aug, 3)
    p["translate"] = torch.tensor([[float(dx), float(dy)]]).repeat(3, 1)
    y = denormalise(aug.apply(x, p), aug)
    base = x.float() / 255
    shifted = torch.roll(base, shifts=(dy, dx), dims=(-2, -1))
    # zero fill where roll wrapped around
    if dx > 0:
        shifted[..., :, :dx] = 0
    if dx < 0:
        shifted[..., :, dx:] = 0
    if dy > 0:
        shifted[..., :dy, :] = 0
    torch.testing.assert_close(y, shifted, rtol=0, atol=1e-5)


def test_digits_rotation_convention_is_counter_clockwise():
    # A quarter turn (outside the sampled range) maps pixel centres onto pixel centres,
    # so it checks the rotation convention exactly: positive = counter-clockwise as
    # displayed (row 0 at the top), like torchvision's rotate / torch.rot90(k=1).
    aug = build_augment("digits", 8, 1)
    x = images(2, 1, 8)
    p = neutral_params(aug, 2)
    p["angle"] = torch.tensor([90.0, -90.0])
    y = denormalise(aug.apply(x, p), aug)
    base = x.float() / 255
    torch.testing.assert_close(y[0], torch.rot90(base[0], 1, dims=(-2, -1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(y[1], torch.rot90(base[1], -1, dims=(-2, -1)), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Photometric operations against torchvision (per-sample reference loop)
# ---------------------------------------------------------------------------------------


def test_mocov2_photometric_pipeline_matches_torchvision_per_sample():
    size, n = 64, 8
    aug = build_augment("mocov2", size, 3)
    x = images(n, 3, size, seed=9)
    p = aug.sample_params(n, gen(10))
    p["crop"] = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(n, 1)  # crop tested separately
    p["jitter"][:6] = True
    p["grayscale"] = torch.tensor([False, False, False, True, False, True, False, False])
    p["blur"] = torch.tensor([True, False] * 4)
    y = denormalise(aug.apply(x, p), aug)

    ops = {
        "brightness": TF.adjust_brightness,
        "contrast": TF.adjust_contrast,
        "saturation": TF.adjust_saturation,
        "hue": TF.adjust_hue,
    }
    names = list(ops)
    k = blur_kernel_size(size)
    for i in range(n):
        img = x[i].float() / 255
        if p["flip"][i]:
            img = TF.horizontal_flip(img)
        if p["jitter"][i]:
            for j in p["jitter_order"][i].tolist():
                img = ops[names[j]](img, p[names[j]][i].item())
        if p["grayscale"][i]:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if p["blur"][i]:
            s = p["blur_sigma"][i].item()
            img = TF.gaussian_blur(img, [k, k], [s, s])
        torch.testing.assert_close(y[i], img, rtol=0, atol=2e-4, msg=f"sample {i}")


def test_blur_only_for_large_images():
    assert "blur" not in build_augment("mocov2", 32, 3).param_keys()
    assert "blur" in build_augment("mocov2", 64, 3).param_keys()
    assert "blur" in build_augment("mocov2", 96, 3).param_keys()
    assert (blur_kernel_size(64), blur_kernel_size(96), blur_kernel_size(224)) == (7, 9, 23)
    aug = build_augment("mocov2", 64, 3)
    x = images(2, 3, 64)
    p = neutral_params(aug, 2)
    p["blur"] = torch.tensor([True, False])
    p["blur_sigma"] = torch.tensor([2.0, 2.0])
    y, ref = aug.apply(x, p), build_eval_transform("mocov2", 64, 3)(x)
    assert (y[0] - ref[0]).abs().max() > 1e-2  # blurred
    torch.testing.assert_close(y[1], ref[1], rtol=0, atol=1e-4)  # delta kernel: untouched
    # Blur smooths: lower total variation.
    tv = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert tv(y[0]) < tv(ref[0])


def test_noise_is_scaled_by_the_recipe_std():
    aug = build_augment("grayscale", 28, 1)
    x = torch.full((1, 1, 28, 28), 128, dtype=torch.uint8)
    p = neutral_params(aug, 1)
    p["noise"] = torch.ones_like(p["noise"])
    y = denormalise(aug.apply(x, p), aug)
    torch.testing.assert_close(y, torch.full_like(y, 128 / 255 + 0.02), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def test_unknown_recipe_names_the_valid_ones():
    for build in (build_augment, build_eval_transform):
        with pytest.raises(ValueError, match="mocov2, strong_color, luminance, grayscale, digits"):
            build("simclr", 32, 3)


def test_channel_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="3-channel"):
        build_augment("mocov2", 32, 1)
    with pytest.raises(ValueError, match="1-channel"):
        build_eval_transform("digits", 8, 3)
    aug = build_augment("mocov2", 32, 3)
    with pytest.raises(ValueError, match="expects 3-channel"):
        aug(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels-last"):
        aug(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        aug(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="lack"):
        aug.apply(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), {"crop": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="rows"):
        aug.apply(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), aug.sample_params(3, gen(0)))


# ---------------------------------------------------------------------------------------
# Device: the same parameters on GPU as on CPU
# ---------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
def test_cuda_matches_cpu(recipe, size, channels):
    aug = build_augment(recipe, size, channels)
    x = images(16, channels, size)
    cpu = aug(x, gen(11))
    cuda = aug(x.cuda(), gen(11))
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=1e-3)


def test_math_sanity_of_log_uniform_ratio():
    # The ratio is log-uniform: its log has mean ~0 for a symmetric log range.
    p = build_augment("mocov2", 32, 3).sample_params(4000, gen(12))
    r = torch.log(p["crop"][:, 2] / p["crop"][:, 3])
    assert abs(r.mean().item()) < 0.02 and r.abs().max() <= math.log(4 / 3) + 1e-5


def test_luminance_recipe_ignores_colour_in_both_paths():
    """`luminance` (the folder default): two images that differ only in hue, with the same
    luminance, are the same image to the network, augmented (same parameters) or not."""
    x = images(6, 3, 32)
    gray = (0.2989 * x[:, 0].float() + 0.587 * x[:, 1].float() + 0.114 * x[:, 2].float()).round()
    same = gray.clamp(0, 255).to(torch.uint8).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()  # its gray twin
    ev = build_eval_transform("luminance", 32, 3)
    torch.testing.assert_close(ev(x), ev(same), rtol=0, atol=0.02)  # rounding of the twin only
    aug = build_augment("luminance", 32, 3)
    params = aug.sample_params(6, gen(5))
    torch.testing.assert_close(aug.apply(x, params), aug.apply(same, params), rtol=0, atol=0.02)
    assert not torch.allclose(build_eval_transform("mocov2", 32, 3)(x), build_eval_transform("mocov2", 32, 3)(same))


# ---------------------------------------------------------------------------------------
# Fixed shapes, one transfer, no host reads (issue 11)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
def test_fixed_shape_photometric_equals_each_samples_own_operations_in_its_order(recipe, size, channels):
    """The stage-wise blends with identity factors and the selected hue give, bit for bit,
    what a plain loop gives that applies to each sample alone its own operations in its own
    order (jitter only if drawn, then grayscale), with the module's operation functions."""
    from scl.augment import _JITTER_OPS, _blur, _luminance

    aug, n = build_augment(recipe, size, channels), 24
    x = images(n, channels, size, seed=4)
    p = aug.sample_params(n, gen(5))
    dp = aug.device_params(p)
    geom = aug._geometry(x, dp)
    fast = aug._photometric_(geom.clone(), dp)
    spec = aug.recipe
    for i in range(n):
        img = geom[i : i + 1].clone()
        gray = spec.grayscale_p > 0 and bool(p["grayscale"][i])
        if gray and spec.grayscale_first:  # (luminance recipe: grayscale before the jitter)
            img = _luminance(img).expand(-1, channels, -1, -1).contiguous()
        if spec.jitter and bool(p["jitter"][i]):
            order = p["jitter_order"][i].tolist() if spec.jitter_random_order else range(len(aug.jitter_ops))
            for j in order:
                op = aug.jitter_ops[j]
                img = _JITTER_OPS[op](img, p[op][i : i + 1])
        if gray and not spec.grayscale_first:
            img = _luminance(img).expand(-1, channels, -1, -1).contiguous()
        if aug.blur_size:  # the blur itself is checked against torchvision above
            img = _blur(img, dp["blur"][i : i + 1])
        if spec.noise_std > 0:
            img = img.add_(spec.noise_std * p["noise"][i : i + 1]).clamp_(0.0, 1.0)
        assert torch.equal(fast[i : i + 1], img), f"sample {i}"


@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
def test_draw_equals_forward_view_by_view_and_has_fixed_shapes(recipe, size, channels):
    """draw(steps) consumes the generator as forward() called view by view would, so a
    run that draws a chunk of steps at once gets the very same augmentations; the device
    parameters' keys and shapes do not depend on the draws."""
    aug, n = build_augment(recipe, size, channels), 8
    x = images(n, channels, size, seed=6)
    g1, g2 = gen(7), gen(7)
    one_by_one = [aug(x, g1) for _ in range(6)]
    drawn = aug.draw(3, n, g2, "cpu")
    assert len(drawn) == 3 and all(len(views) == 2 for views in drawn)
    for expected, dp in zip(one_by_one, [v for views in drawn for v in views]):
        assert torch.equal(aug.apply_device(x, dp), expected)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))  # same draws consumed
    shapes = [{k: v.shape for k, v in aug.device_params(aug.sample_params(n, gen(s))).items()} for s in range(5)]
    assert all(sh == shapes[0] for sh in shapes)
    assert aug.param_bytes(n) == 4 * sum(math.prod(s) for s in shapes[0].values())


@pytest.mark.parametrize(("recipe", "size", "channels"), CASES, ids=CASE_IDS)
def test_apply_device_reads_nothing_back_and_builds_no_host_constants(recipe, size, channels):
    from scl.hostsync import HostSyncRecorder

    aug = build_augment(recipe, size, channels)
    x = images(8, channels, size)
    (dq, dk), = aug.draw(1, 8, gen(8), "cpu")
    with HostSyncRecorder() as rec:
        aug.apply_device(x, dq)
    assert rec.events == [], rec.report()
    eval_tf = build_eval_transform(recipe, size, channels)
    with HostSyncRecorder() as rec:
        eval_tf(x)
    assert rec.events == [], rec.report()
