"""Example WSGI applications for rgunicorn.

Run any of them from the repository root, e.g.::

    rgunicorn examples.hello:application
    rgunicorn -w 2 examples.middleware:application
"""
