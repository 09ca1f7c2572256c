"""One module per paper artefact (see :mod:`reproduce.registry`)."""
