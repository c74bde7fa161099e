"""dSprites rebuilt (dareg.dsprites, dsprites_npz, painting): DeepMind's index order, the sprites
rendered from their latents, the three domains by their definitions, the official test splits,
the seeded draws, DeepMind's npz read row by row, and the painting."""
from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dareg import dsprites, dsprites_npz, painting
from dareg.errors import DataError

def sprite(shape=0, scale=3, orientation=0, x=15, y=15) -> np.ndarray:
    """The generated sprite of one latent combination."""
    index = dsprites.latents_to_index(np.array([[shape, scale, orientation, x, y]]))
    return dsprites.generate_sprites(index)[0]


def centroid(image: np.ndarray) -> np.ndarray:
    """(row, column) mean of the pixels that are on."""
    return np.argwhere(image).mean(axis=0)


def write_npz(path, indices, sprites, compressed=True, **replace) -> None:
    """An npz in DeepMind's layout holding `indices` in that row order; `replace` swaps a field."""
    classes = dsprites.index_to_latents(np.asarray(indices))
    fields = {"imgs": np.asarray(sprites, dtype=np.uint8),
              "latents_classes": np.column_stack([np.zeros(len(classes), np.int64), classes]),
              "latents_values": dsprites.latent_values(classes),
              "metadata": np.array({"latents_sizes": np.array([1, 3, 6, 40, 32, 32])})}
    fields.update(replace)
    (np.savez_compressed if compressed else np.savez)(path, **{
        name: value for name, value in fields.items() if value is not None})


def test_index_and_latents_round_trip_over_the_whole_grid():
    """Every one of the 737,280 indices maps to distinct latents and back."""
    index = np.arange(dsprites.GRID)
    classes = dsprites.index_to_latents(index)
    assert dsprites.GRID == 737_280 and (classes.max(0) + 1).tolist() == [3, 6, 40, 32, 32]
    assert np.array_equal(dsprites.latents_to_index(classes), index)


def test_indices_follow_deepmind_order():
    """y varies fastest (DeepMind: index 1 is y = 1, index 32 is x = 1), then x, orientation,
    scale, shape; the official lists' first lines decode by the same formula."""
    known = {0: [0, 0, 0, 0, 0], 1: [0, 0, 0, 0, 1], 32: [0, 0, 0, 1, 0],
             1024: [0, 0, 1, 0, 0], 40960: [0, 1, 0, 0, 0], 245760: [1, 0, 0, 0, 0],
             737279: [2, 5, 39, 31, 31], 154: [0, 0, 0, 4, 26], 74: [0, 0, 0, 2, 10],
             3: [0, 0, 0, 0, 3]}
    assert dsprites.index_to_latents(list(known)).tolist() == list(known.values())
    firsts = [dsprites.official_test(domain)[0] for domain in dsprites.STYLES]
    assert firsts == [154, 74, 3]


def test_latent_values_are_deepmind_metadata_values():
    """colour 1, shape 1..3, scale 0.5..1, orientation 0..2 pi, x and y 0..1."""
    classes = np.array([[0, 0, 0, 0, 0], [2, 5, 39, 31, 31], [1, 1, 1, 1, 2]])
    values = dsprites.latent_values(classes)
    np.testing.assert_allclose(values, [[1, 1, 0.5, 0, 0, 0], [1, 3, 1, 2 * np.pi, 1, 1],
                                        [1, 2, 0.6, 0.16110732, 0.03225806, 0.06451613]],
                               atol=1e-7)


def test_factor_values_are_classes_over_their_last_class():
    """The benchmark's labels: scale / 5, orientation / 39, x / 31, y / 31, in the order named."""
    table = pd.DataFrame({"shape": [0, 1, 2], "scale": [0, 5, 2], "orientation": [39, 0, 13],
                          "x": [31, 0, 10], "y": [0, 31, 3]})
    values = dsprites.factor_values(table[list(dsprites.LATENTS)].to_numpy(),
                                    ["scale", "x", "y", "orientation"])
    np.testing.assert_allclose(values, [[0, 1, 0, 1], [1, 0, 1, 0], [0.4, 10 / 31, 3 / 31, 1 / 3]])


def test_generated_sprites_are_binary_and_inside_the_frame():
    """No pixel ever touches the border, even at scale 1, any orientation, in the corners."""
    corners = [[shape, 5, o, x, y] for shape in range(3) for o in range(40)
               for x in (0, 31) for y in (0, 31)]
    sprites = dsprites.generate_sprites(dsprites.latents_to_index(np.array(corners)))
    assert set(np.unique(sprites)) == {0, 1} and sprites.sum(axis=(1, 2)).min() > 20
    border = sprites[:, [0, -1], :].sum() + sprites[:, :, [0, -1]].sum()
    assert border == 0


def test_x_moves_right_y_moves_down_scale_grows():
    """DeepMind's x = 0 is the left edge; rows run down with y; a larger scale covers more."""
    for shape in range(3):
        columns = [centroid(sprite(shape, x=x))[1] for x in (0, 10, 20, 31)]
        rows = [centroid(sprite(shape, y=y))[0] for y in (0, 10, 20, 31)]
        areas = [sprite(shape, scale=s).sum() for s in range(6)]
        assert np.all(np.diff(columns) > 8) and np.all(np.diff(rows) > 8)
        assert np.all(np.diff(areas) > 0)
        assert abs(centroid(sprite(shape, x=0))[1] - 16) < 2.5  # the centre half: 16 to 48
        assert abs(centroid(sprite(shape, y=31))[0] - 48) < 2.5


def test_orientation_turns_clockwise_and_wraps():
    """Orientation 0 and 39 (0 and 2 pi) give the same sprite; at 46 degrees the ellipse's long
    axis runs from top left to bottom right (clockwise as displayed, rows down)."""
    for shape in range(3):
        assert np.array_equal(sprite(shape, orientation=0), sprite(shape, orientation=39))
    flat, turned = sprite(1, scale=5), sprite(1, scale=5, orientation=5)
    assert np.ptp(np.argwhere(flat)[:, 1]) > 1.5 * np.ptp(np.argwhere(flat)[:, 0])
    rows, columns = np.argwhere(turned).T
    assert np.corrcoef(rows, columns)[0, 1] > 0.5


def test_rendering_ten_thousand_sprites_is_quick():
    """The cache stage renders a split at a time: 10,000 sprites within a few seconds."""
    indices = np.random.default_rng(0).choice(dsprites.GRID, 10_000, replace=False)
    start = time.perf_counter()
    dsprites.generate_sprites(indices)
    assert time.perf_counter() - start < 5


def test_pack_and_unpack_round_trip():
    """sprites.npy stores 8 bytes a sprite row; unpacking gives the sprites back exactly."""
    sprites = dsprites.generate_sprites([0, 5000, 737279])
    rows = dsprites.pack(sprites)
    assert rows.shape == (3, 64, 8) and rows.dtype == np.uint8
    assert np.array_equal(dsprites.unpack(rows), sprites)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """Packed sprites of six images, all shapes and scales."""
    return dsprites.pack(dsprites.generate_sprites([1000, 40000, 300000, 400000, 600000, 737000]))


def render_one(rows, style, seed, picture=None) -> tuple[np.ndarray, np.ndarray]:
    """(images, sprites as bool) of all `rows` in one style, seeds seed, seed + 1, ..."""
    picture = painting.stand_in() if picture is None else picture
    images = dsprites.render(rows, [style] * len(rows), range(seed, seed + len(rows)), picture)
    return images, dsprites.unpack(rows).astype(bool)


def test_color_is_one_colour_on_black(rows):
    """Background exactly 0; every sprite pixel the image's colour, each channel in [0.5, 1]."""
    images, sprites = render_one(rows, "color", 0)
    for image, mask in zip(images, sprites):
        assert image[~mask].max() == 0
        colour = image[mask]
        assert (colour == colour[0]).all() and colour.min() >= 127
    assert len({tuple(image[mask][0]) for image, mask in zip(images, sprites)}) == len(images)


def test_noisy_is_white_on_uniform_noise(rows):
    """Sprite pixels exactly 255; the background uniform noise over 0..255 in each channel."""
    images, sprites = render_one(rows, "noisy", 0)
    assert (images[sprites] == 255).all()
    background = images[~sprites]
    assert background.min() <= 2 and background.max() >= 253
    assert abs(background.mean() - 127.5) < 2 and abs(background.std() - 73.6) < 2


def test_scream_inverts_the_background_under_the_sprite(rows):
    """A sprite pixel is 255 minus the background the same seed paints with no sprite there."""
    images, sprites = render_one(rows, "scream", 7)
    empty = np.zeros_like(rows)
    backgrounds = dsprites.render(empty, ["scream"] * len(rows), range(7, 7 + len(rows)),
                                  painting.stand_in())
    assert np.array_equal(images[~sprites], backgrounds[~sprites])
    inverse = 255 - backgrounds[sprites].astype(int)
    assert np.abs(images[sprites].astype(int) - inverse).max() <= 1


def test_scream_background_is_textured_and_varies(rows):
    """The stand-in painting gives crops with texture inside and differences between seeds."""
    images, sprites = render_one(rows, "scream", 0)
    assert min(image.std() for image in images) > 15
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 20


def test_an_image_depends_on_its_seed_only(rows):
    """The same seed gives the same image in any batch; another seed another image."""
    picture = painting.stand_in()
    for style in dsprites.STYLES:
        batch = dsprites.render(rows, [style] * 6, [11, 12, 13, 14, 15, 16], picture)
        alone = dsprites.render(rows[3:4], [style], [14], picture)
        mixed = dsprites.render(rows[[5, 3]], ["noisy", style], [1, 14], picture)
        other = dsprites.render(rows[3:4], [style], [99], picture)
        assert np.array_equal(batch[3], alone[0]) and np.array_equal(mixed[1], alone[0])
        assert not np.array_equal(other[0], alone[0])


def test_official_test_splits_are_shipped_sorted_and_on_the_grid():
    """RSD's and DARE-GRAM's test lists: 7,435 color, 7,407 noisy, 7,385 scream indices."""
    for domain, count in {"color": 7435, "noisy": 7407, "scream": 7385}.items():
        test = dsprites.official_test(domain)
        assert len(test) == count and np.all(np.diff(test) > 0)
        assert test.min() >= 0 and test.max() < dsprites.GRID


def test_source_draw_leaves_out_its_official_test_and_is_seeded():
    """The source never holds its domain's official test images; the seed fixes the draw."""
    source = dsprites.source_indices("noisy", 500, seed=3)
    assert len(np.unique(source)) == 500 and np.all(np.diff(source) > 0)
    assert not np.isin(source, dsprites.official_test("noisy")).any()
    assert np.array_equal(source, dsprites.source_indices("noisy", 500, seed=3))
    assert not np.array_equal(source, dsprites.source_indices("noisy", 500, seed=4))


def test_target_lists_every_official_test_index_and_a_separate_draw():
    """The target's draw uses its own stream: it differs from a source draw of the same seed."""
    target, official = dsprites.target_indices("scream", 300, seed=3)
    test = dsprites.official_test("scream")
    assert np.array_equal(target[official], test) and (~official).sum() == 300
    assert np.all(np.diff(target) > 0)
    drawn = target[~official]
    assert not np.array_equal(drawn, dsprites.source_indices("scream", 300, seed=3))


def test_asking_for_more_than_the_grid_holds_is_a_clear_error():
    """Too large a count names the param and how many images there are to draw from."""
    with pytest.raises(DataError, match="dsprites.source_images is 737280, more than the 729845"):
        dsprites.source_indices("color", dsprites.GRID, seed=0)


def test_rendering_seeds_are_per_image():
    """An image's seed depends on the seed, its stream and its index, not on the others drawn."""
    seeds = dsprites.rendering_seeds([5, 9, 700000], seed=0, stream=1)
    assert seeds.dtype == np.int64 and (seeds >= 0).all() and len(set(seeds)) == 3
    assert dsprites.rendering_seeds([9], seed=0, stream=1)[0] == seeds[1]
    assert dsprites.rendering_seeds([9], seed=0, stream=0)[0] != seeds[1]
    assert dsprites.rendering_seeds([9], seed=1, stream=1)[0] != seeds[1]


@pytest.mark.parametrize("compressed", [True, False])
def test_npz_rows_are_read_by_index_in_the_order_asked(tmp_path, compressed):
    """A subset of the grid in any row order; indices asked twice come back twice."""
    indices = np.array([700000, 5, 123456, 42, 600001])
    imgs = np.random.default_rng(0).integers(0, 2, (5, 64, 64))
    write_npz(tmp_path / "d.npz", indices, imgs, compressed)
    got = dsprites_npz.read_sprites(tmp_path / "d.npz", [42, 700000, 42, 600001])
    assert np.array_equal(got, imgs[[3, 0, 3, 4]])


def test_npz_reading_streams_the_images(tmp_path):
    """Reading the last of 16,384 sprites (64 MiB) holds a few MiB at a time, not the field."""
    indices = np.arange(16_384)
    imgs = np.zeros((len(indices), 64, 64), np.uint8)
    imgs[-1, 10:20, 30:40] = 1
    write_npz(tmp_path / "big.npz", indices, imgs)
    tracemalloc.start()
    got = dsprites_npz.read_sprites(tmp_path / "big.npz", [16_383])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(got[0], imgs[-1]) and peak < 24 * 2 ** 20


@pytest.mark.parametrize("replace, message", [
    ({"latents_values": None}, "field 'latents_values' missing"),
    ({"imgs": np.zeros((2, 64, 32), np.uint8)},
     "'imgs' is uint8 (2, 64, 32), not uint8 (N, 64, 64)"),
    ({"imgs": np.zeros((2, 64, 64), np.float32)}, "'imgs' is float32"),
    ({"latents_classes": np.array([[0, 0, 0, 0, 0, 1], [0, 3, 0, 0, 0, 0]])},
     "row 1 of latents_classes, [0, 3, 0, 0, 0, 0], is off the grid"),
    ({"latents_values": np.zeros((2, 6))},
     "row 0 of latents_values, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], disagrees with its classes"),
    ({"imgs": np.full((2, 64, 64), 255, np.uint8)}, "imgs row 1 is not binary"),
    ({"imgs": np.zeros((3, 64, 64), np.uint8)}, "different numbers of images [2, 3]"),
])
def test_npz_not_in_deepmind_layout_is_refused_by_name(tmp_path, replace, message):
    """A missing field, a wrong shape or dtype, latents off the grid, non-binary sprites, or
    fields of different lengths: a DataError naming the file and what is wrong."""
    write_npz(tmp_path / "bad.npz", [0, 1], np.zeros((2, 64, 64)), **replace)
    with pytest.raises(DataError) as error:
        dsprites_npz.read_sprites(tmp_path / "bad.npz", [1])
    assert message in str(error.value) and str(tmp_path / "bad.npz") in str(error.value)


def test_npz_errors_name_missing_indices_repeats_and_non_zips(tmp_path):
    """Images asked for but absent, an image listed twice, a file that is no zip, no file."""
    write_npz(tmp_path / "d.npz", [0, 1], np.zeros((2, 64, 64)))
    with pytest.raises(DataError, match=r"2 of the dSprites images asked for are not in the file "
                                        r"\(indices \[2, 7\]"):
        dsprites_npz.read_sprites(tmp_path / "d.npz", [1, 7, 2])
    write_npz(tmp_path / "twice.npz", [4, 4], np.zeros((2, 64, 64)))
    with pytest.raises(DataError, match="row 1 repeats the latents"):
        dsprites_npz.read_sprites(tmp_path / "twice.npz", [4])
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not an npz"):
        dsprites_npz.read_sprites(tmp_path / "text.npz", [4])
    with pytest.raises(DataError, match="gone.npz: not found"):
        dsprites_npz.read_sprites(tmp_path / "gone.npz", [4])


def test_painting_is_thumbnailed_to_fit_350_by_274(tmp_path):
    """As disentanglement_lib: a 500 x 638 portrait becomes 215 x 274; PNG round trip exact."""
    Image.new("RGB", (500, 638), (200, 90, 30)).save(tmp_path / "big.jpg")
    picture = dsprites.read_painting(tmp_path / "big.jpg")
    assert picture.shape == (274, 215, 3) and picture.dtype == np.uint8
    stand_in = painting.stand_in()
    assert stand_in.shape == (274, 215, 3) and stand_in.std(axis=(0, 1)).min() > 20
    painting.write_png(tmp_path / "p.png", stand_in)
    assert np.array_equal(dsprites.read_painting(tmp_path / "p.png"), stand_in)


def test_bad_paintings_are_refused_by_name(tmp_path):
    """Not an image, too small for 64x64 crops, or missing: a DataError naming the file."""
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match="notes.jpg: not an image Pillow can read"):
        dsprites.read_painting(tmp_path / "notes.jpg")
    Image.new("RGB", (60, 100)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="small.png: 60x100 pixels after the thumbnail"):
        dsprites.read_painting(tmp_path / "small.png")
    with pytest.raises(DataError, match="gone.png: not found"):
        dsprites.read_painting(tmp_path / "gone.png")
