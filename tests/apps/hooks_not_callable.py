"""A hook module whose post_fork is not a function."""

post_fork = 42
