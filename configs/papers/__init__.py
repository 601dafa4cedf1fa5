"""Paper setups: each file reproduces one paper's configuration (WMT'14 from
the TFDS catalog) and has a ``tiny`` argument that runs without network."""
