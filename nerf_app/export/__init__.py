"""What users take away from a run: marching-cubes meshes, camera paths, videos."""
