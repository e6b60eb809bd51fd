"""Fixtures shared by the tests; plugins hold the ones that start real servers."""

pytest_plugins = ["tests.s3_server", "tests.server", "tests.docker_env", "tests.browser"]  # registered here, before any test imports them, so their asserts are rewritten
