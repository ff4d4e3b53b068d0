"""The host side of a board: ``protocol`` (frames on the serial link) and ``link`` (``hwnn run-
board``); neither imports Amaranth, so a host needs only NumPy and pyserial.
"""
