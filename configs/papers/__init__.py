"""Paper setups, one file per paper: its model, data, optimizer and decoding
as the paper states them, with the differences named in the docstring.

Each reads WMT'14 from the TFDS catalog by name
(``data.task = "tfds:wmt14_translate/fr-en"``), which needs the dataset
prepared once with network access (docs/data.md). The ``tiny`` argument
swaps in the synthetic ``reverse`` task at tiny sizes — the same model family,
cell, readout and optimizer — so that each runs in the tests without network
(``configs.common.paper_tiny``).
"""
