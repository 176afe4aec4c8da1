"""One module per CLI verb (see :data:`nerf_app.cli.VERBS`)."""
