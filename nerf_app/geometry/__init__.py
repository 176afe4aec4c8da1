"""Triangle-mesh geometry: loading + normalisation, robust signed distance (libigl), surface sampling, metrics."""
