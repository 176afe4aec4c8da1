"""The mesh export pipeline (``nerf-app export RUN --mesh OUT --texture``) and its evaluation
(``nerf-app eval RUN --mesh FILE``). Modules:

- ``options``: command-line values checked before a run is opened (texture size, faces, ``--crop``), the
  axes and region keys the files carry;
- ``surface``: :class:`Surface`, what a task hands over through ``Task.export_surface``; the level set of
  an SDF/occupancy field;
- ``nerf_surface``: a NeRF's surface by ``--method density | tsdf``;
- ``depth``: median-depth maps at pinhole twins of the training cameras; ``tsdf``: their fusion;
- ``region``: the region of interest (training box or ``--crop``) and its pixels in a view;
- ``photos``: hidden-face culls and the least-squares texture from the appearance-corrected photos;
- ``pipeline``: the stages (surface, cull, simplify, unwrap, bake, photos, write);
- ``mesh_eval``: the rendered mesh scored at the held-out views, whole frame and region pixels.
"""
