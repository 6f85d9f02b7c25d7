"""Result pictures a page shows: every expression's colour visible where masks overlap, text sized to the picture
(readable once it is shown at a page's width), large pictures shown downscaled."""

import numpy as np
import pytest

from litelvlm.viz import DISPLAY_LONGEST, DISPLAY_WIDTH, PALETTE, Figure, annotate, mask_overlay

READABLE_ON_SCREEN = 9  # pixels: the smallest text height accepted once a picture is shown DISPLAY_WIDTH wide


def _dark_runs(page: np.ndarray, rows: slice = slice(None), x0: int = 0) -> list[int]:
    """Heights of the runs of consecutive rows that hold dark (text) pixels, within ``rows`` and columns from ``x0``."""
    dark = (page[rows, x0:] < 90).all(-1).any(-1)
    runs, length = [], 0
    for row in dark:
        if row:
            length += 1
        elif length:
            runs, length = runs + [length], 0
    return runs + ([length] if length else [])


def _on_screen(height: int, page: np.ndarray) -> float:
    """``height`` pixels of ``page`` once the page is shown DISPLAY_WIDTH pixels wide."""
    return height * DISPLAY_WIDTH / page.shape[1]


def _blend(base, colour) -> np.ndarray:
    return ((0.5 * np.asarray(base, float) + 0.5 * np.asarray(colour, float))).astype(np.uint8)


@pytest.mark.parametrize("count", [2, 3])
def test_coinciding_masks_show_every_colour(count):
    image = np.full((120, 160, 3), 100, np.uint8)
    masks = np.zeros((count, 120, 160), bool)
    masks[:, 20:100, 30:130] = True  # the same mask for every expression
    masks[0, :10, :10] = True  # and a corner of expression 1 alone
    out = mask_overlay(image, masks)
    block = out[20:100, 30:130].reshape(-1, 3)
    shares = [(block == _blend(100, PALETTE[i])).all(-1).mean() for i in range(count)]
    assert all(share > 0.8 / count for share in shares) and sum(shares) == pytest.approx(1.0)
    assert (out[:10, :10] == _blend(100, PALETTE[0])).all() and (out[110:, 140:] == 100).all()  # alone: plain, outside: untouched


def test_text_grows_with_the_picture():
    """The kept-token sheet of 16 frames is ~1600 pixels wide: its title must not shrink to ~5 pixels on the page."""
    for width in (336, 1588, 4000):
        page = annotate(np.full((200, width, 3), 255, np.uint8), ["Visual tokens sent per sampled frame", "'the dog'"],
                        [((40, 110, 255), "sent to the LLM (framed blue)")])
        title = _dark_runs(page)[0]
        assert _on_screen(title, page) >= READABLE_ON_SCREEN or page.shape[1] <= DISPLAY_WIDTH and title >= 11, (width, title)


def test_large_pictures_are_shown_at_display_size_with_a_readable_legend():
    """An 8000x6000 upload: the page shows it at most DISPLAY_LONGEST a side, its legend readable at the page's width."""
    picture = np.full((6000, 8000, 3), 255, np.uint8)
    legend = [(PALETTE[0], "'the red car': 1234567 mask pixels"), (PALETTE[1], "'the dog': 7654 mask pixels")]
    page = Figure(picture, ["Masks of 2 expression(s) on the uploaded image", "method litelvlm"], legend).render(DISPLAY_LONGEST)
    assert page.shape[1] <= DISPLAY_LONGEST + 80 and page.shape[0] < 1280
    legend_lines = _dark_runs(page, slice(page.shape[0] - 200, None), x0=80)
    assert len(legend_lines) == 2 and all(_on_screen(h, page) >= READABLE_ON_SCREEN for h in legend_lines)
    assert Figure(picture[:300, :400], ["small"]).render(DISPLAY_LONGEST).shape[1] < 500  # small pictures stay as they are


def test_kept_token_sheet_labels_are_readable():
    from video.kept_pictures import FrameTokens, StreamGeometry, kept_token_sheet

    geometry = StreamGeometry(clip_crop=336, clip_grid=24, image_grid=12, video_size=224, video_grid=8)
    video = np.full((16, 90, 120, 3), 255, np.uint8)
    frames = [FrameTokens(f, np.arange(84), np.zeros(0, np.int64), np.arange(64), 21) for f in range(16)]
    sheet = kept_token_sheet(video, frames, geometry)
    label = _dark_runs(sheet)[0]  # "frame 0" above the first pair of tiles
    assert sheet.shape[1] > 1500 and _on_screen(label, sheet) >= READABLE_ON_SCREEN
