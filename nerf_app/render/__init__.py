"""Rendering: ray marching and volume rendering (NeRF), sphere tracing and root finding (surfaces)."""
