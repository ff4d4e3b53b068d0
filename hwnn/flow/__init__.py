"""The flow from a network to a design folder: ``generate`` (design folders), ``designfolder``
(reading one back without Amaranth), ``report`` (what the commands print), ``demo`` (``hwnn
demo``).
"""
