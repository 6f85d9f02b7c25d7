"""``litelvlm serve``: a web page to segment an uploaded image or short video with visual-token pruning.

Upload, type one or more expressions (one per line), pick the method and the budget: the page shows the mask
overlay with a legend (overlapping masks striped, large pictures shown at most 1280 pixels a side), a kept-token
map per expression, the number of visual tokens the LLM saw and the per-stage timings. A video browsers cannot
play is previewed as an H.264 copy (``litelvlm.serve_preview``).
By default it runs the embedded tiny checkpoints with RANDOM weights (said at the top of the page: the masks
are meaningless, the mechanics are real); ``--checkpoint`` / ``--video-checkpoint`` take folders or Hub ids.
A bad upload or request gets a message on the page, never a stack trace nor a server path. The page reads only
files uploaded to it and bounds every request before work (``litelvlm.serve_inputs``; the bounds are on the
page). Needs Gradio (extra ``demo``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .serve_inputs import (FULL_TOKENS, MAX_VIDEO_FRAMES, DemoLimits, RequestRefused, UploadFolder, check_method, parse_budget,
                           parse_expressions, read_uploaded_image, read_uploaded_video)
from .viz import DISPLAY_LONGEST

__all__ = ["DemoModels", "DemoLimits", "build_app", "segment_image_request", "segment_video_request", "preview_video_request",
           "MAX_VIDEO_FRAMES", "exposure_warning", "serve"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 16  # requests waiting; one runs at a time


@dataclass
class DemoModels:
    """The page's models (``litelvlm.load``): an image pipeline and a video pipeline, loaded by ``serve`` before it
    serves (or when first needed)."""

    image_checkpoint: str = "tiny"
    video_checkpoint: str | None = "tiny"
    vision_tower: str | None = None
    video_tower: str | None = None
    device: str = "cpu"
    _pipes: dict = field(default_factory=dict, repr=False)

    @property
    def kinds(self) -> list[str]:
        return ["image", "video"] if self.video_checkpoint is not None else ["image"]

    def weights(self, kind: str) -> str:
        checkpoint = self.image_checkpoint if kind == "image" else self.video_checkpoint
        from .pipeline import TINY_WEIGHTS, is_tiny

        return TINY_WEIGHTS if is_tiny(checkpoint) else f"weights: {checkpoint}"

    def pipeline(self, kind: str):
        if kind not in self._pipes:
            from .pipeline import load

            if kind == "image":
                self._pipes[kind] = load("glamm", self.image_checkpoint, vision_tower=self.vision_tower, device=self.device)
            else:
                if self.video_checkpoint is None:
                    raise RequestRefused("no video model on this server: start it with --video-checkpoint (a folder, or 'tiny')")
                self._pipes[kind] = load("videoglamm", self.video_checkpoint, vision_tower=self.vision_tower,
                                         video_tower=self.video_tower, device=self.device)
        return self._pipes[kind]


def image_methods() -> list[str]:
    """The pruning methods the image tab offers (clip-level methods need a video)."""
    from .pruning import clip_level_methods

    return [m for m in video_methods() if m not in clip_level_methods()]


def video_methods() -> list[str]:
    from .pruning import available_methods

    return [m for m in available_methods() if m != "none"]


def _timings_table(timings: dict) -> str:
    rows = "\n".join(f"| {stage} | {1000 * seconds:.1f} |" for stage, seconds in timings.items() if stage != "total")
    return f"| stage | ms |\n|---|---|\n{rows}\n| **total** | **{1000 * timings.get('total', 0.0):.1f}** |"


def _guard(handler: Callable, failure: tuple, action: str = "segment") -> Callable:
    """Run ``handler``; a refused request (or a bad argument the models reject) becomes its message on the page
    ("**Cannot {action}:** ..."), any other error a message naming only its type (the traceback goes to the server log)."""

    def run(*args):
        try:
            return handler(*args)
        except ValueError as err:  # RequestRefused, or the segmenter's own argument checks: written for the user
            return (*failure, f"**Cannot {action}:** {err}")
        except Exception as err:  # anything else may name server files: the operator's log only
            log.error("demo request failed:\n%s", traceback.format_exc())
            return (*failure, f"**Something went wrong** ({type(err).__name__}); the server log has the details.")

    return run


def _request(text, method, budget, methods: list[str], limits: DemoLimits) -> tuple[list[str], int | None, str]:
    """(expressions, budget or None for all tokens, method to run) of a request, checked before any work."""
    expressions = parse_expressions(text, limits)
    tokens = parse_budget(budget)
    method = check_method(method, methods)
    return expressions, tokens, method if tokens is not None else "none"


def segment_image_request(models: DemoModels, image, text, method, budget, *, uploads: UploadFolder,
                          limits: DemoLimits = DemoLimits()):
    """(overlay shown at most ``DISPLAY_LONGEST`` a side, a kept-token map per expression, summary markdown, message) for
    one image request; each picture's title names its expression."""
    from .segment_cli import result_pictures

    expressions, tokens, method = _request(text, method, budget, image_methods(), limits)
    image = read_uploaded_image(uploads, image, limits)
    pipe = models.pipeline("image")
    result = pipe(image, expressions, budget=tokens, method=method)
    overlay, maps, _ = result_pictures(image, result, expressions, pipe.segmenter.clip.vision.config, "the uploaded image")
    summary = (f"**{result.num_visual_tokens} visual tokens** of {FULL_TOKENS} reached the LLM per expression "
               f"(method {result.method}); {len(expressions)} expression(s).\n\n{_timings_table(result.timings)}")
    return overlay.render(DISPLAY_LONGEST), [picture.render() for picture in maps], summary, ""


def segment_video_request(models: DemoModels, video, text, method, budget, *, uploads: UploadFolder,
                          limits: DemoLimits = DemoLimits()):
    """(overlay mp4 path, a kept-token sheet per expression and clip, summary markdown, message) for one video request;
    each sheet's title names its expression. The overlay is written in a temporary folder (removed, even on error) and
    kept in the upload folder."""
    from video.io import write_overlay_mp4
    from video.kept_pictures import kept_token_figures

    expressions, tokens, method = _request(text, method, budget, video_methods(), limits)
    frames = read_uploaded_video(uploads, video, limits)
    pipe = models.pipeline("video")
    result = pipe(frames, expressions, budget=tokens, method=method)
    with tempfile.TemporaryDirectory(prefix="litelvlm-demo-") as folder:
        overlay = uploads.keep(write_overlay_mp4(frames, result.masks, Path(folder) / "overlay.mp4"))
    sheets = [figure.render() for _, _, figure in kept_token_figures(frames, result, expressions, pipe.segmenter.stream_geometry())]
    summary = (f"**{result.visual_tokens_per_frame:.0f} visual tokens per frame** reached the LLM "
               f"({result.clip_tokens_per_frame:.0f} from CLIP + InternVideo2's); {len(frames)} frames; "
               f"[SEG] emitted: {', '.join('yes' if s else 'no' for s in result.has_seg)}.\n\n{_timings_table(result.timings)}")
    return overlay, sheets, summary, ""


def preview_video_request(video, *, uploads: UploadFolder, limits: DemoLimits = DemoLimits()):
    """(the input box's new video, message) when a video is uploaded: an H.264 copy when browsers cannot play the
    upload, else no change (``litelvlm.serve_preview``)."""
    import gradio as gr

    from .serve_preview import playable_preview

    preview = playable_preview(uploads, video, limits)
    return (gr.skip() if preview is None else preview), ""


def build_app(models: DemoModels, limits: DemoLimits = DemoLimits(), uploads: UploadFolder | None = None):
    """The Gradio page (``gr.Blocks``); its API endpoints are ``/segment_image``, ``/segment_video`` and ``/preview_video``
    (the video box's H.264 copy of an upload browsers cannot play). Files are
    read only from ``uploads`` (default: Gradio's upload folder); uploads and results are deleted after an hour."""
    import gradio as gr

    uploads = uploads or UploadFolder.of_gradio()
    with gr.Blocks(title="litelvlm demo", delete_cache=(600, 3600)) as app:
        gr.Markdown("# litelvlm: referring segmentation with visual-token pruning\n"
                    f"Image model: {models.weights('image')}.  \nVideo model: "
                    f"{models.weights('video') if models.video_checkpoint else 'none (start with --video-checkpoint)'}.",
                    elem_id="header")
        gr.Markdown(f"{limits.describe()} One request runs at a time.", elem_id="limits")
        with gr.Tab("Image"):
            _image_tab(gr, models, limits, uploads)
        with gr.Tab("Video"):
            _video_tab(gr, models, limits, uploads)
    return app


def _image_tab(gr, models: DemoModels, limits: DemoLimits, uploads: UploadFolder) -> None:
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", label=f"image ({limits.image.describe()})", elem_id="image-input")
            text = _expressions_box(gr, limits, "image-expressions")
            method = gr.Dropdown(image_methods(), value="litelvlm", label="pruning method", elem_id="image-method")
            budget = gr.Slider(1, FULL_TOKENS, value=192, step=1, label=f"visual tokens kept ({FULL_TOKENS} = all)",
                               elem_id="image-budget")
            button = gr.Button("Segment", variant="primary", elem_id="image-segment")
        with gr.Column():
            message = gr.Markdown(elem_id="image-message")
            overlay = gr.Image(label="masks", show_label=False, elem_id="image-overlay")  # the picture has its own title
            kept_map = _kept_gallery(gr, "image-kept")
            summary = gr.Markdown(elem_id="image-summary")
    # preprocess=False: litelvlm reads the upload itself, from the upload folder only, bounded before decoding
    button.click(_guard(lambda *a: segment_image_request(models, *a, uploads=uploads, limits=limits), (None, None, "")),
                 [image, text, method, budget], [overlay, kept_map, summary, message], api_name="segment_image", preprocess=False)


def _video_tab(gr, models: DemoModels, limits: DemoLimits, uploads: UploadFolder) -> None:
    with gr.Row():
        with gr.Column():
            video = gr.Video(label=f"short video (mp4, at most {limits.max_video_frames} frames, each {limits.video_frame.describe()})",
                             elem_id="video-input")
            gr.Markdown("A video your browser cannot play (e.g. OpenCV's mp4v) is converted to H.264 for the preview and "
                        "the segmentation.", elem_id="video-note")
            text = _expressions_box(gr, limits, "video-expressions")
            method = gr.Dropdown(video_methods(), value="litelvlm", label="pruning method", elem_id="video-method")
            budget = gr.Slider(1, FULL_TOKENS, value=81, step=1, label="CLIP tokens kept per frame", elem_id="video-budget")
            button = gr.Button("Segment", variant="primary", elem_id="video-segment")
        with gr.Column():
            message = gr.Markdown(elem_id="video-message")
            overlay = gr.Video(label="masks", elem_id="video-overlay")
            kept = _kept_gallery(gr, "video-kept")
            summary = gr.Markdown(elem_id="video-summary")
    button.click(_guard(lambda *a: segment_video_request(models, *a, uploads=uploads, limits=limits), (None, None, "")),
                 [video, text, method, budget], [overlay, kept, summary, message], api_name="segment_video", preprocess=False)
    video.upload(_guard(lambda v: preview_video_request(v, uploads=uploads, limits=limits), (gr.skip(),), "preview"),
                 [video], [video, message], api_name="preview_video", preprocess=False)


def _kept_gallery(gr, elem_id: str):
    """One kept-token picture per expression (and clip), each shown whole, one per row; PNG keeps the cell frames' colours."""
    return gr.Gallery(label="kept tokens per expression", show_label=False, columns=1, object_fit="contain", height="auto",
                      format="png", elem_id=elem_id)


def _expressions_box(gr, limits: DemoLimits, elem_id: str):
    return gr.Textbox(lines=3, max_length=limits.max_text_chars, elem_id=elem_id,
                      label=f"referring expressions (one per line; at most {limits.max_expressions}, "
                            f"{limits.max_expression_chars} characters each)")


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or a name) only ever means this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def exposure_warning(host: str, port: int) -> str | None:
    """The warning ``serve`` prints when ``host`` is reachable from other machines (None on loopback)."""
    if is_loopback(host):
        return None
    return (f"warning: litelvlm serve listens on {host}:{port}, reachable from other machines: anyone who can connect may "
            "upload files and spend this machine's compute (requests are bounded, see the page). Serve on 127.0.0.1 "
            "(the default) unless you mean to share it, and put it behind a login for untrusted networks.")


def serve(models: DemoModels, host: str = "127.0.0.1", port: int = 7860, block: bool = True,
          limits: DemoLimits = DemoLimits()):
    """Load the models, then serve the page on ``host:port`` (warning on stderr when that is not loopback)."""
    warning = exposure_warning(host, port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    for kind in models.kinds:  # fail before serving when a checkpoint cannot load
        models.pipeline(kind)
    app = build_app(models, limits)
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=True, show_error=False,
               max_file_size=limits.max_upload_bytes)
    return app
