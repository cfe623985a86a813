"""A bare Faust pass-through worker: the framework's own ceiling, as a baseline for ``ripple bench``.

``python -m devtools.faust_baseline BROKER APP_ID SRC DST [--table]`` runs one agent that reads
``SRC`` event by event (``stream.events()``, as Ripple's ``engage`` agent does), decodes the JSON,
optionally writes it to a changelog-backed table keyed by ``user_id`` (as Ripple writes a profile
per event), and sends it to ``DST``.  No models, no profiles, no recommendations: whatever this
reaches on a machine bounds what any per-event Faust agent can reach there.
"""

from __future__ import annotations

import argparse
import json
import logging

import faust

from streams import gc_tuning, wire


def build(broker: str, app_id: str, src: str, dst: str, *, table: bool, batch: int = 0,
          datadir: str | None = None) -> faust.App:
    wire.keep_faust_json_stdlib()  # as the worker's Faust app
    app = faust.App(app_id, broker=[f"kafka://{b.strip()}" for b in broker.split(",")], store="memory://",
                    datadir=datadir or f"{app_id}-data",
                    web_enabled=False, key_serializer="raw", value_serializer="json", topic_partitions=4,
                    producer_linger=0.05)  # the worker's default (RIPPLE_PRODUCER_LINGER_S): batches the sends
    source = app.topic(src, value_type=bytes, value_serializer="raw")
    sink = app.topic(dst, value_serializer="raw")
    state = app.Table("state", default=None, key_type=str) if table else None  # JSON values

    async def one(event, *, batched: bool = False) -> None:
        doc = json.loads(event.value)
        if state is not None and batched:  # no current event inside a batch: name the changelog partition
            state.data[doc["user_id"]] = doc
            state.send_changelog(event.message.partition, doc["user_id"], doc)
        elif state is not None:
            state[doc["user_id"]] = doc
        await sink.send(key=event.key, value=wire.dumps(doc))

    @app.agent(source, name="passthrough")
    async def passthrough(stream):
        if batch > 0:  # the same work, events taken in micro-batches (the agent loop runs per batch)
            async for events in stream.take_events(batch, within=0.05):
                for event in events:
                    await one(event, batched=True)
        else:
            async for event in stream.events():
                await one(event)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.faust_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("broker")
    parser.add_argument("app_id")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--table", action="store_true", help="write each event to a changelog-backed table")
    parser.add_argument("--batch", type=int, default=0, metavar="N",
                        help="take events in micro-batches of up to N (stream.take_events) instead of one at a time")
    parser.add_argument("--datadir", metavar="DIR", help="Faust's data directory (default: ./APP_ID-data)")
    parser.add_argument("--gc-threshold", type=int, default=0, metavar="N",
                        help="the worker's garbage-collector tuning (RIPPLE_GC_THRESHOLD; default 0: Python's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    app = build(args.broker, args.app_id, args.src, args.dst, table=args.table, batch=args.batch,
                datadir=args.datadir)
    worker = faust.Worker(app, loglevel="warning")
    gc_tuning.tune(args.gc_threshold)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
