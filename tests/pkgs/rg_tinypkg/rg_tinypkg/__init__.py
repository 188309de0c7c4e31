"""A marker package: importable only from the virtualenv it was installed in."""

GREETING = "hello from rg_tinypkg"
