//! The master process (gunicorn's arbiter): binds the sockets, forks the
//! workers and supervises them. It never initialises Python.
