"""Tooling for development and tests, never imported by the worker at run time.

A real Apache Kafka 4.x on loopback (:mod:`devtools.local_kafka`, fetched from Maven Central by
:mod:`devtools.kafka_dist`; several nodes: :mod:`devtools.cluster`), used by ``ripple broker``,
``ripple demo`` and the broker tier of the tests; and ``ripple bench`` (:mod:`devtools.bench`) with
its same-run baselines (:mod:`devtools.faust_baseline`), its Kafka plumbing
(:mod:`devtools.bench_kafka`) and the way it times a run (:mod:`devtools.bench_timing`).  The
runtime Kafka layer is :mod:`streams`; nothing under ``streams/`` imports this package.
"""
