"""`embedq bench runtime|service|http|faults|accuracy|recipes|quants`: the benchmarks in bench/, each replacing its
own sections of BENCHMARKS.md in place (bench/report.py)."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (write their sections of BENCHMARKS.md)",
                                   description="Benchmarks; each replaces its own sections of BENCHMARKS.md.")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    sub.required = True

    from bench import accuracy, faults, quants, recipes, runtime, service
    from bench import http as http_bench

    p = sub.add_parser("runtime", help="our runtime vs llama.cpp and sentence-transformers")
    runtime.add_arguments(p)
    p.set_defaults(func=runtime.run_cli)

    p = sub.add_parser("service", help="end-to-end throughput and latency through Redis")
    service.add_arguments(p)
    p.set_defaults(func=service.run)

    p = sub.add_parser("http", help="the HTTP gateway beside the Celery path: requests/s, p50/p95/p99")
    http_bench.add_arguments(p)
    p.set_defaults(func=http_bench.run)

    p = sub.add_parser("faults", help="the service under injected faults: worker SIGKILLs, Redis restarts (with "
                                      "and without persistence), database outages, bad messages and model files; "
                                      "jobs submitted, done, failed, lost, duplicated")
    faults.add_arguments(p)
    p.set_defaults(func=faults.run)

    p = sub.add_parser("accuracy", help="vectors vs sentence-transformers and token ids vs HF, per model and file "
                                        "type; also writes bench/results/accuracy.json")
    accuracy.add_arguments(p)
    p.set_defaults(func=accuracy.run)

    p = sub.add_parser("recipes", help="EmbeddingGemma Q8_0: per-tensor-group sensitivity and mixed-precision recipes")
    recipes.add_arguments(p)
    p.set_defaults(func=recipes.run)

    p = sub.add_parser("quants", help="files quantized by llama.cpp (Q4_0 ... Q6_K, K_M recipes): size, accuracy "
                                      "and speed, embedq beside llama.cpp on the same file")
    quants.add_arguments(p)
    p.set_defaults(func=quants.run)
