"""Segmentation metrics.

Modules are imported explicitly (``from eval.metrics.iou import ...``); this package file stays empty so that
metric modules written independently never depend on each other.
"""
