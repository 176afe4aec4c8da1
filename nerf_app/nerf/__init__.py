"""NeRF mode: the Instant-NGP radiance field, its cascaded occupancy grid, renderer and training task."""
