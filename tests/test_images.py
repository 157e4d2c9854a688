"""Loading images of every kind, and the geometry that maps activation cells back onto them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from layerscope import ImageError
from layerscope.images import load_image, sample_image
from layerscope.preprocess import Preprocess, prepare_image


def _png(path, image):
    image.save(path)
    return path


def test_sample_images_are_bundled():
    image = load_image(sample_image())
    assert image.mode == "RGB" and image.size == (512, 512)
    assert load_image(sample_image("chelsea")).size == (451, 300)
    with pytest.raises(ImageError, match="astronaut"):
        sample_image("nope")


def test_exif_orientation_is_applied(tmp_path):
    base = Image.new("RGB", (40, 20), (255, 0, 0))
    base.paste((0, 0, 255), (0, 0, 10, 20))  # blue stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = tmp_path / "rotated.jpg"
    base.save(path, exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.size == (20, 40)  # upright: taller than wide
    top = np.asarray(image)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the left stripe is now on top


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (8, 6), 128),
        lambda: Image.new("RGBA", (8, 6), (255, 0, 0, 0)),
        lambda: Image.fromarray(np.full((6, 8), 65535, np.uint16)),
        lambda: Image.new("P", (8, 6)),
    ],
    ids=["gray", "rgba", "16bit", "palette"],
)
def test_modes_become_rgb(make, tmp_path):
    image = load_image(_png(tmp_path / "x.png", make()))
    assert image.mode == "RGB" and image.size == (8, 6)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert tuple(np.asarray(load_image(rgba))[0, 0]) == (255, 255, 255)


def test_sixteen_bit_keeps_its_range(tmp_path):
    a = np.zeros((4, 4), np.uint16)
    a[0, 0] = 65535
    a[0, 1] = 32768
    pixels = np.asarray(load_image(_png(tmp_path / "deep.png", Image.fromarray(a))))
    assert pixels[0, 0, 0] == 255 and 126 <= pixels[0, 1, 0] <= 129 and pixels[1, 1, 0] == 0


def test_arrays_and_tensors():
    hwc = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(load_image(hwc)), hwc)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    assert np.array_equal(np.asarray(load_image(chw)), hwc)
    assert np.array_equal(np.asarray(load_image(chw.float() / 255)), hwc)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((4, 4, 3), 3.0))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 7)))
    with pytest.raises(ImageError, match="cannot use a dict"):
        load_image({})


def test_not_an_image_file(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(ImageError, match="not an image"):
        load_image(bad)
    with pytest.raises(ImageError, match="no image file"):
        load_image(tmp_path / "missing.png")


def test_huge_images_are_capped():
    image = load_image(Image.new("RGB", (5000, 2500)), max_side=1000)
    assert image.size == (1000, 500)
    assert image.info["layerscope_source_size"] == (2500, 5000)


def test_preprocess_geometry_resize_and_crop():
    image = Image.new("RGB", (400, 200))
    prepared = Preprocess(resize=100, crop=(100, 100))(image)
    assert prepared.tensor.shape == (1, 3, 100, 100)
    g = prepared.geometry
    assert g.input_size == (100, 100) and g.scale == (2.0, 2.0) and g.offset == (0.0, 100.0)
    # A 10x10 map over the cropped input: cell (0, 0) covers image x 100..120, y 0..20.
    assert g.cell_box((10, 10), 0, 0) == (0.0, 100.0, 20.0, 120.0)
    assert g.cell_box((10, 10), 9, 9) == (180.0, 280.0, 200.0, 300.0)


def test_preprocess_matches_torchvision_and_maps_the_stride():
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights

    transforms = DeepLabV3_ResNet50_Weights.DEFAULT.transforms()
    pre = Preprocess.from_transforms(transforms)
    image = load_image(sample_image("chelsea"))
    prepared = pre(image)
    assert torch.equal(prepared.tensor[0], transforms(image))
    # Output stride 8: a 65 x 98 layer; its last cell ends at the image's corner.
    lh, lw = -(-prepared.tensor.shape[2] // 8), -(-prepared.tensor.shape[3] // 8)
    y0, x0, y1, x1 = prepared.geometry.cell_box((lh, lw), lh - 1, lw - 1)
    assert (y1, x1) == (300.0, 451.0) and y0 < 300 and x0 < 451


@pytest.mark.parametrize("crop", [31, 33, 34, 35, 37])
def test_a_crop_larger_than_the_image_is_placed_where_torchvision_pads_it(crop):
    """A marked pixel lands in the input where the geometry says (torchvision pads (c - s) // 2
    before; a rounding of (s - c) / 2 is one pixel off when c - s is 3, 7, ...)."""
    pixels = np.zeros((30, 30, 3), np.uint8)
    pixels[4, 9] = 255
    prepared = Preprocess(resize=None, crop=(crop, crop), mean=(0, 0, 0), std=(1, 1, 1))(pixels)
    (row, col) = np.argwhere(prepared.tensor[0, 0].numpy() > 0.5)[0]
    g = prepared.geometry
    assert (row, col) == (4 - g.offset[0], 9 - g.offset[1])


def test_prepare_with_a_plain_callable():
    import torchvision.transforms as T

    compose = T.Compose([T.Resize((64, 32)), T.ToTensor()])
    prepared = prepare_image(Image.new("RGB", (100, 50)), compose)
    assert prepared.tensor.shape == (1, 3, 64, 32)
    assert prepared.geometry.scale == (50 / 64, 100 / 32)
    with pytest.raises(ImageError, match="must return"):
        prepare_image(Image.new("RGB", (4, 4)), lambda im: "nope")


def test_bytes_are_not_silently_accepted():
    with pytest.raises(ImageError):
        load_image(io.BytesIO(b"abc"))
