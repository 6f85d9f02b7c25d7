"""``litelvlm serve``: a web page to segment an uploaded image or short video with visual-token pruning.

Upload, type one or more expressions (one per line), pick the method and the budget: the page shows the mask
overlay with a legend, the kept-token map, the number of visual tokens the LLM saw and the per-stage timings.
By default it runs the embedded tiny checkpoints with RANDOM weights (said at the top of the page: the masks
are meaningless, the mechanics are real); ``--checkpoint`` / ``--video-checkpoint`` take folders or Hub ids.
A bad upload or request gets a message on the page, never a stack trace. Needs Gradio (extra ``demo``).
"""

from __future__ import annotations

import logging
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["DemoModels", "build_app", "segment_image_request", "segment_video_request", "MAX_VIDEO_FRAMES", "serve"]

log = logging.getLogger(__name__)

MAX_VIDEO_FRAMES = 96  # a short clip: the demo is interactive
FULL_TOKENS = 576


@dataclass
class DemoModels:
    """The page's models, loaded when first needed: an image pipeline and a video pipeline (``litelvlm.load``)."""

    image_checkpoint: str = "tiny"
    video_checkpoint: str | None = "tiny"
    vision_tower: str | None = None
    video_tower: str | None = None
    device: str = "cpu"
    _pipes: dict = field(default_factory=dict, repr=False)

    def weights(self, kind: str) -> str:
        checkpoint = self.image_checkpoint if kind == "image" else self.video_checkpoint
        return "RANDOM weights (embedded tiny checkpoint): the masks are meaningless, the pruning mechanics are real" \
            if checkpoint == "tiny" else f"weights: {checkpoint}"

    def pipeline(self, kind: str):
        if kind not in self._pipes:
            from .pipeline import load

            if kind == "image":
                self._pipes[kind] = load("glamm", self.image_checkpoint, vision_tower=self.vision_tower, device=self.device)
            else:
                if self.video_checkpoint is None:
                    raise ValueError("no video model on this server: start it with --video-checkpoint (a folder, or 'tiny')")
                self._pipes[kind] = load("videoglamm", self.video_checkpoint, vision_tower=self.vision_tower,
                                         video_tower=self.video_tower, device=self.device)
        return self._pipes[kind]


def _expressions(text: str | None) -> list[str]:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        raise ValueError("type at least one referring expression (one per line)")
    return lines


def _budget(budget) -> int | None:
    value = int(budget)
    if not 1 <= value <= FULL_TOKENS:
        raise ValueError(f"the budget must be between 1 and {FULL_TOKENS} visual tokens, got {value}")
    return None if value == FULL_TOKENS else value


def _timings_table(timings: dict) -> str:
    rows = "\n".join(f"| {stage} | {1000 * seconds:.1f} |" for stage, seconds in timings.items() if stage != "total")
    return f"| stage | ms |\n|---|---|\n{rows}\n| **total** | **{1000 * timings.get('total', 0.0):.1f}** |"


def _upload_path(payload) -> str | None:
    """The file path of an upload as Gradio hands it over unprocessed (``preprocess=False``): a path string, an
    image / file payload ``{"path": ...}``, or a video payload ``{"video": {"path": ...}}``; None when empty."""
    if payload is None or isinstance(payload, (str, Path)):
        return str(payload) if payload else None
    if isinstance(payload, dict):
        if isinstance(payload.get("video"), dict):
            return _upload_path(payload["video"])
        return payload.get("path") or None
    raise ValueError(f"unexpected upload {type(payload).__name__}: upload an image or video file")


def _guard(handler: Callable, failure: tuple) -> Callable:
    """Run ``handler``; any error becomes a message on the page (the traceback goes to the server log only)."""

    def run(*args):
        try:
            return handler(*args)
        except (ValueError, FileNotFoundError) as err:
            return (*failure, f"**Cannot segment:** {err}")
        except Exception as err:  # anything else: say what, log the traceback for the operator
            log.error("demo request failed:\n%s", traceback.format_exc())
            return (*failure, f"**Something went wrong:** {type(err).__name__}: {err}")

    return run


def segment_image_request(models: DemoModels, image, text, method, budget):
    """(overlay, kept-token map, summary markdown, message) for one image request."""
    from .segment_cli import result_pictures
    from .pipeline import as_image

    image = _upload_path(image) if not isinstance(image, np.ndarray) else image
    if image is None:
        raise ValueError("upload an image first")
    image = as_image(image)
    expressions = _expressions(text)
    pipe = models.pipeline("image")
    result = pipe(image, expressions, budget=_budget(budget), method=method if int(budget) < FULL_TOKENS else "none")
    overlay, maps, _ = result_pictures(image, result, expressions, pipe.segmenter.clip.vision.config, "the uploaded image")
    summary = (f"**{result.num_visual_tokens} visual tokens** of {FULL_TOKENS} reached the LLM per expression "
               f"(method {result.method}); {len(expressions)} expression(s).\n\n{_timings_table(result.timings)}")
    return overlay.render(), maps[0].render(), summary, ""


def segment_video_request(models: DemoModels, video_path, text, method, budget):
    """(overlay mp4 path, kept-token sheet of the first expression, summary markdown, message) for one video request."""
    from video.io import write_overlay_mp4
    from video.kept_pictures import kept_token_figures

    from .pipeline import as_frames

    video_path = _upload_path(video_path)
    if not video_path:
        raise ValueError("upload a video first (mp4)")
    frames = as_frames(video_path)
    if len(frames) > MAX_VIDEO_FRAMES:
        raise ValueError(f"the video has {len(frames)} frames: the demo takes short clips of at most {MAX_VIDEO_FRAMES}")
    expressions = _expressions(text)
    pipe = models.pipeline("video")
    result = pipe(frames, expressions, budget=_budget(budget), method=method if int(budget) < FULL_TOKENS else "none")
    out = Path(tempfile.mkdtemp(prefix="litelvlm-demo-")) / "overlay.mp4"
    write_overlay_mp4(frames, result.masks, out)
    _, _, sheet = kept_token_figures(frames, result, expressions[:1], pipe.segmenter.stream_geometry())[0]
    summary = (f"**{result.visual_tokens_per_frame:.0f} visual tokens per frame** reached the LLM "
               f"({result.clip_tokens_per_frame:.0f} from CLIP + InternVideo2's); {len(frames)} frames; "
               f"[SEG] emitted: {', '.join('yes' if s else 'no' for s in result.has_seg)}.\n\n{_timings_table(result.timings)}")
    return str(out), sheet.render(), summary, ""


def build_app(models: DemoModels):
    """The Gradio page (``gr.Blocks``); its two API endpoints are ``/segment_image`` and ``/segment_video``."""
    import gradio as gr

    from .pruning import available_methods, clip_level_methods

    methods = [m for m in available_methods() if m != "none"]
    image_methods = [m for m in methods if m not in clip_level_methods()]  # clip-level methods need a video
    with gr.Blocks(title="litelvlm demo") as app:
        gr.Markdown("# litelvlm: referring segmentation with visual-token pruning\n"
                    f"Image model: {models.weights('image')}.  \nVideo model: "
                    f"{models.weights('video') if models.video_checkpoint else 'none (start with --video-checkpoint)'}.",
                    elem_id="header")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="filepath", label="image", elem_id="image-input")
                    image_text = gr.Textbox(lines=3, label="referring expressions (one per line)", elem_id="image-expressions")
                    image_method = gr.Dropdown(image_methods, value="litelvlm", label="pruning method", elem_id="image-method")
                    image_budget = gr.Slider(1, FULL_TOKENS, value=192, step=1, label=f"visual tokens kept ({FULL_TOKENS} = all)",
                                             elem_id="image-budget")
                    image_button = gr.Button("Segment", variant="primary", elem_id="image-segment")
                with gr.Column():
                    image_message = gr.Markdown(elem_id="image-message")
                    overlay = gr.Image(label="masks", show_label=False, elem_id="image-overlay")  # the picture has its own title
                    kept_map = gr.Image(label="kept tokens", show_label=False, elem_id="image-kept")
                    image_summary = gr.Markdown(elem_id="image-summary")
            image_button.click(_guard(lambda *a: segment_image_request(models, *a), (None, None, "")),
                               [image, image_text, image_method, image_budget], [overlay, kept_map, image_summary, image_message],
                               api_name="segment_image", preprocess=False)  # uploads decoded by litelvlm: bad files get a message
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(label=f"short video (mp4, at most {MAX_VIDEO_FRAMES} frames)", elem_id="video-input")
                    video_text = gr.Textbox(lines=3, label="referring expressions (one per line)", elem_id="video-expressions")
                    video_method = gr.Dropdown(methods, value="litelvlm", label="pruning method", elem_id="video-method")
                    video_budget = gr.Slider(1, FULL_TOKENS, value=81, step=1, label="CLIP tokens kept per frame", elem_id="video-budget")
                    video_button = gr.Button("Segment", variant="primary", elem_id="video-segment")
                with gr.Column():
                    video_message = gr.Markdown(elem_id="video-message")
                    video_overlay = gr.Video(label="masks", elem_id="video-overlay")
                    video_kept = gr.Image(label="kept tokens", show_label=False, elem_id="video-kept")
                    video_summary = gr.Markdown(elem_id="video-summary")
            video_button.click(_guard(lambda *a: segment_video_request(models, *a), (None, None, "")),
                               [video, video_text, video_method, video_budget], [video_overlay, video_kept, video_summary, video_message],
                               api_name="segment_video", preprocess=False)
    return app


def serve(models: DemoModels, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Load the image model, then serve the page on ``host:port``."""
    models.pipeline("image")  # fail before serving when the checkpoint cannot load
    app = build_app(models)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=True, show_error=False)
    return app
