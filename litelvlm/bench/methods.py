"""The method a bench case runs: a registered name or ``name:key=value,...`` spec, its LLM layer scaled to depth."""

from __future__ import annotations

__all__ = ["bench_selector"]


def bench_selector(spec: str, llm_layers: int, full_layers: int):
    """The method of ``spec``; a method that acts at an LLM layer (FastV, IVC-Prune, DyCoke, PruneVid) and whose
    layer the spec does not set gets its release's layer K scaled to the benchmarked LLM's depth,
    ``max(1, round(K * llm_layers / full_layers))`` (the bench shrinks the depth, and a layer fixed in absolute terms
    would leave a different share of the LLM unpruned, or lie past its last layer). A ``:released=True`` spec keeps
    the release's absolute layer (it refuses any other): where that layer does not fit the shrunk LLM the method's
    own warning says which layer it uses instead, and the bench row records both. A bare name with nothing to
    scale comes back as the name (the segmenter's own choice of options, e.g. litelvlm's cell=2 on video)."""
    from ..pruning import get_method, parse_method_spec

    name, options = parse_method_spec(spec)
    selector = get_method(name, **options)
    layer = getattr(selector, "layer", None)
    if (layer is not None and "layer" not in options and llm_layers != full_layers
            and getattr(selector, "released", False) is not True):
        return get_method(name, **options, layer=max(1, round(layer * llm_layers / full_layers)))
    return selector if options else name
