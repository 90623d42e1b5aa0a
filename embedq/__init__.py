"""The `embedq` command line: one package over the library (schemas, worker, native, storage).

`embedq.cli.main` builds the parser from three areas: models (native: convert, pull, list, embed),
service (worker and storage: worker, enqueue, job, search, stats) and bench (bench/: runtime,
service, accuracy, recipes). Handlers import what they need when they run, so `embedq --help` is
fast and a client that only searches never loads a model.
"""
