"""Signed-distance and occupancy fields of meshes (issue 6): data, fields, tasks."""
