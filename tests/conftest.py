"""Test-suite set-up: the same toolchain environment the CLI uses."""

from hwnn.toolchain import setup_env

setup_env()
