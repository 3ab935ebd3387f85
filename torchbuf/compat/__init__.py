"""Drop-ins for code written against other libraries.

:mod:`torchbuf.compat.imitation` holds imitation's wrappers, returning imitation's own
numpy types; it needs imitation installed (``pip install 'torchbuf[imitation]'``).
"""
