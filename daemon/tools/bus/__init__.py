"""The local redis-server behind `live.bus` (Debian's package), for development and the tests."""
