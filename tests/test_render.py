from __future__ import annotations

import numpy as np

from samdash.render import Layer, contours_of, draw_layers, hex_to_rgb, palette_color, resize_mask, rgb_to_hex


def _square_mask(height: int = 400, width: int = 600) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[100:300, 200:400] = True
    return mask


def test_contour_follows_the_mask_boundary():
    (contour,) = contours_of(_square_mask())
    assert contour.min(axis=0).tolist() == [200, 100]
    assert contour.max(axis=0).tolist() == [399, 299]


def test_holes_are_outlined_too():
    mask = _square_mask()
    mask[180:220, 280:320] = False
    assert len(contours_of(mask)) == 2


def test_outline_on_a_display_copy_lands_on_the_scaled_boundary():
    mask = _square_mask()
    display = np.zeros((200, 300, 3), np.uint8)
    drawn = draw_layers(display, [Layer.from_mask(mask, (255, 0, 0))], scale=0.5, thickness=1)
    red = (drawn[..., 0] > 128) & (drawn[..., 1] < 64)
    ys, xs = np.nonzero(red)
    assert abs(xs.min() - 100) <= 1 and abs(xs.max() - 199) <= 1
    assert abs(ys.min() - 50) <= 1 and abs(ys.max() - 149) <= 1
    assert not red[100, 150]  # the inside stays unpainted without a fill
    assert display.sum() == 0  # the input is not modified


def test_fill_tints_only_the_object():
    mask = _square_mask()
    display = np.full((400, 600, 3), 100, np.uint8)
    for layer in (Layer.from_mask(mask, (0, 0, 255)), Layer((0, 0, 255), contours_of(mask))):
        drawn = draw_layers(display, [layer], fill_opacity=0.5, thickness=1)
        assert drawn[200, 300].tolist() == [50, 50, 177]
        assert drawn[10, 10].tolist() == [100, 100, 100]


def test_a_fill_from_the_outline_leaves_holes_open_at_any_scale():
    mask = _square_mask()
    mask[180:220, 280:320] = False
    mask[195:205, 295:305] = True  # an island in the hole
    for scale in (1.0, 0.5):
        size = (round(600 * scale), round(400 * scale))
        filled = Layer((0, 0, 255), contours_of(mask)).area(size, scale)
        exact = resize_mask(mask, size)
        assert (filled != exact).sum() <= 0.01 * exact.sum()
        assert not filled[round(190 * scale), round(290 * scale)] and filled[round(200 * scale), round(300 * scale)]


def test_resize_mask_keeps_thin_structures_reasonable():
    mask = _square_mask()
    small = resize_mask(mask, (60, 40))
    assert small.shape == (40, 60)
    assert small[20, 30] and not small[2, 2]


def test_colours_round_trip_and_cycle():
    assert hex_to_rgb(rgb_to_hex((1, 128, 255))) == (1, 128, 255)
    assert palette_color(0) == palette_color(10) != palette_color(1)
