#!/usr/bin/env python
"""Convert a checkpoint of the official Mega code (facebookresearch/mega) to this plugin: see
mega_fairseq/conversion/convert.py, or run with --help."""

from mega_fairseq.conversion.convert import main

if __name__ == "__main__":
    main()
