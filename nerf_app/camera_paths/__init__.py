"""Camera paths for `render`: generated orbits/spirals (`orbit`) and nerfstudio-style camera_path.json files with keyframe interpolation (`keyframes`)."""
