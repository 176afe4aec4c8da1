"""The INR family's signal-fitting modes: ``image`` (2D -> colour) and, later, ``audio`` (1D -> amplitude).

A coordinate network ``f(x) = net(enc(x))`` stores one signal; the encoding (identity, positional,
Fourier features, hash grid) and the network (ReLU MLP, SIREN) are chosen in the config
(:mod:`nerf_app.inr.field`).
"""
