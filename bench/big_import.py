"""A WSGI app with a big import, for bench/preload.sh: importing it builds
about BIG_IMPORT_MB (default 200) MiB of Python objects, the way a large
Django project's models, translation catalogs and caches fill a worker.

    MODELS   classes, each with a `_meta` dict of field dicts (name, column,
             verbose name, help text, choices), like ORM models
    CATALOG  a str -> str dict, like a translation catalog
    INDEX    a str -> list-of-ints dict, like a search or routing cache

A request touches a small part of it, as one request path of a big project
does: `GET /` renders one of the HOT models (every 50th; the requests go
round them in turn) field by field and looks up the catalog entries of its
fields, so the refcounts of those objects are written; the rest is imported
and never read. With BIG_IMPORT_FULL_GC_AFTER=N a process runs one full
collection (`gc.collect()`) at its Nth request, standing in for the full
collections that a worker's own long-lived allocations trigger (CPython
runs one when the objects that survived into the oldest generation since
the last one reach a quarter of it). `GET /pid` answers the worker's pid; `GET /stats` answers
this process's pid, import time, requests served, gc counters (full
collections since its first request, objects frozen) and VERSION as JSON.
"""

import gc
import json
import os
import time

_import_started = time.perf_counter()

VERSION = "v1"  # bench/preload.sh edits this line in a copy to check reloads
TARGET_MIB = int(os.environ.get("BIG_IMPORT_MB", "200"))
# After this many requests a process runs one full collection (0: never),
# as the full collections its own long-lived allocations would trigger.
FULL_GC_AFTER = int(os.environ.get("BIG_IMPORT_FULL_GC_AFTER", "0"))

# One "unit" is one model and its share of the catalog and the index; the
# constant is measured (RSS after import / units) on CPython 3.11.
UNIT_KIB = 19
UNITS = max(1, TARGET_MIB * 1024 // UNIT_KIB)
FIELDS_PER_MODEL = 12
HOT_EVERY = 50


class Model:
    """The base of the generated model classes."""

    _meta = None


def _field(model_no, field_no):
    name = f"field_{field_no}_of_{model_no}"
    return {
        "name": name,
        "column": f"col_{model_no}_{field_no}",
        "verbose_name": f"Field {field_no} of model {model_no}",
        "help_text": f"The {field_no}th attribute of model {model_no}; shown in forms and admin pages.",
        "max_length": 32 + field_no,
        "null": field_no % 3 == 0,
        "choices": [(f"c{k}", f"Choice {k} of {name}") for k in range(field_no % 4)],
        "msgid": f"msgid:{model_no}:{field_no}",
    }


def _build():
    models, catalog, index = [], {}, {}
    for m in range(UNITS):
        fields = [_field(m, f) for f in range(FIELDS_PER_MODEL)]
        meta = {
            "db_table": f"app_{m // 100}_model_{m}",
            "verbose_name": f"Model number {m}",
            "ordering": [f["name"] for f in fields[:2]],
            "fields": fields,
        }
        models.append(type(f"Model{m}", (Model,), {"_meta": meta, "__module__": __name__}))
        for f in fields:
            catalog[f["msgid"]] = f"Übersetzung von {f['verbose_name']} ({m})"
        index[f"route:/model/{m}/"] = list(range(m, m + 24))
    return models, catalog, index


MODELS, CATALOG, INDEX = _build()
HOT = MODELS[::HOT_EVERY]
IMPORT_SECONDS = time.perf_counter() - _import_started

_served = 0
_full_gcs_before_serving = None


def _render(model):
    meta = model._meta
    total = 0
    names = []
    for field in meta["fields"]:
        label = CATALOG[field["msgid"]]
        total += len(field["column"]) + len(field["verbose_name"]) + len(label) + field["max_length"]
        names.append(field["name"])
    return {"table": meta["db_table"], "fields": len(names), "first": names[0], "size": total}


def application(environ, start_response):
    global _served, _full_gcs_before_serving
    if _full_gcs_before_serving is None:
        _full_gcs_before_serving = gc.get_stats()[2]["collections"]
    _served += 1
    if _served == FULL_GC_AFTER:
        gc.collect()
    path = environ.get("PATH_INFO", "/")
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/stats":
        body = json.dumps({
            "pid": os.getpid(),
            "import_seconds": IMPORT_SECONDS,
            "served": _served,
            "version": VERSION,
            "gc_collections": [g["collections"] for g in gc.get_stats()],
            "full_gcs_serving": gc.get_stats()[2]["collections"] - _full_gcs_before_serving,
            "gc_frozen": gc.get_freeze_count(),
            "models": len(MODELS),
            "hot": len(HOT),
        }).encode()
    else:
        page = _render(HOT[_served % len(HOT)])
        page["version"] = VERSION
        body = json.dumps(page).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
