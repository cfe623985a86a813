"""``ripple serve``: recommendations on demand over HTTP.

It reads every partition of the compacted ``recommendations`` and ``trending`` topics from the
start (no consumer group: replicas run side by side, each holding the newest list of every
user) and answers:

* ``GET /v1/users/{user_id}/recommendations`` — the user's newest list with its age and
  ``based_on_events``; a user never recommended to gets the trending list (``source: trending``);
* ``GET /v1/trending[?window=1h|24h]`` — the newest trends (404 for an unknown window);
* ``GET /healthz`` (alive), ``GET /readyz`` (200 once it has read to the end offsets it saw at
  start, 503 before), ``GET /metrics`` (its own Prometheus metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from processors.latest_lists import LatestLists
from ripple.settings import Settings
from streams import security
from streams.metrics import ServiceMetrics
from streams.edge import pseudonymizer_for

log = logging.getLogger("ripple.serve")

ROUTES = ("recommendations", "trending", "healthz", "readyz", "metrics")


class RecommendationsService:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.lists = LatestLists(k=settings.rec_k)
        self.metrics = ServiceMetrics()
        self.ready = asyncio.Event()
        self._pseudonymizer = pseudonymizer_for(settings)
        self._reader: asyncio.Task | None = None

    # -- Kafka ---------------------------------------------------------------------------
    async def read_topics(self) -> None:
        from aiokafka import AIOKafkaConsumer

        s = self.settings
        recs, trending = s.topic("recommendations"), s.topic("trending")
        consumer = AIOKafkaConsumer(bootstrap_servers=s.broker, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **security.kafka_client_kwargs(s))
        await consumer.start()
        try:
            tps = await self._wait_for_topics(consumer, (recs, trending))
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            todo = {tp for tp, end in ends.items() if end > 0}
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for r in records:
                        if tp.topic == recs and r.key is not None:
                            self.lists.put_recommendations(r.key.decode("utf-8", "replace"), r.value)
                        elif tp.topic == trending:
                            self.lists.put_trending(r.value)
                    self.metrics.records.inc(len(records))
                if todo:
                    todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
                if not todo and not self.ready.is_set():
                    self.ready.set()
                    self.metrics.ready.set(1)
                    log.info("serve: ready with %d users' lists", len(self.lists))
                self.metrics.users.set(len(self.lists))
        finally:
            await consumer.stop()

    async def _wait_for_topics(self, consumer, topics: tuple[str, ...]) -> list:
        """Every partition of ``topics`` once they all exist (a worker creates them); until then
        ``/readyz`` answers 503 and the service says once what it waits for."""
        from aiokafka import TopicPartition

        from streams.topics import partition_counts

        said = False
        while True:
            found = await partition_counts(self.settings.broker, topics, **security.kafka_client_kwargs(self.settings))
            if all(t in found for t in topics):
                return [TopicPartition(t, p) for t in topics for p in range(found[t])]
            if not said:
                log.warning("serve: waiting for topics %s (a worker creates them)", ", ".join(t for t in topics if t not in found))
                said = True
            await asyncio.sleep(1.0)

    # -- HTTP ----------------------------------------------------------------------------
    def app(self, *, read_topics: bool = True) -> web.Application:
        """The aiohttp application; ``read_topics=False``: no Kafka reader (fed by hand, in tests)."""
        app = web.Application(middlewares=[self._measure])
        app.router.add_get("/v1/users/{user_id}/recommendations", self.recommendations, name="recommendations")
        app.router.add_get("/v1/trending", self.trending, name="trending")
        app.router.add_get("/healthz", self.healthz, name="healthz")
        app.router.add_get("/readyz", self.readyz, name="readyz")
        app.router.add_get("/metrics", self.prometheus, name="metrics")
        if read_topics:
            app.on_startup.append(self._start_reader)
            app.on_cleanup.append(self._stop_reader)
        return app

    @web.middleware
    async def _measure(self, request: web.Request, handler):
        route = request.match_info.route.name if request.match_info.route.name in ROUTES else "other"
        start = time.perf_counter()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            self.metrics.requests.labels(route=route, code=str(code)).inc()
            self.metrics.seconds.labels(route=route).observe(time.perf_counter() - start)

    async def recommendations(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        key = self._pseudonymizer.user(user_id) if self._pseudonymizer is not None else user_id
        answer = self.lists.answer(key, now=time.time())
        answer["user_id"] = user_id
        return web.json_response(answer)

    async def trending(self, request: web.Request) -> web.Response:
        window = request.query.get("window")
        trends = self.lists.trending(window, now=time.time())
        if trends is None:
            if window is not None and window not in self.lists.windows() and self.lists.windows():
                return web.json_response({"error": f"unknown window; one of {', '.join(self.lists.windows())}"},
                                         status=404)
            return web.json_response({"window": window, "posts": [], "authors": [], "generated_at": None})
        return web.json_response(trends)

    async def healthz(self, request: web.Request) -> web.Response:
        if self._reader is not None and self._reader.done():
            return web.json_response({"status": "reader stopped"}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ok = self.ready.is_set()
        return web.json_response({"ready": ok, "users": len(self.lists)}, status=200 if ok else 503)

    async def prometheus(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _start_reader(self, app: web.Application) -> None:
        self._reader = asyncio.create_task(self.read_topics(), name="read_topics")
        self._reader.add_done_callback(_report_reader_end)

    async def _stop_reader(self, app: web.Application) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


def _report_reader_end(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("serve: the topic reader stopped: %s", task.exception())


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the service until Ctrl-C / SIGTERM."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("serve: http://%s:%d, reading %s and %s at %s", host, port, settings.topic("recommendations"),
             settings.topic("trending"), settings.broker)
    web.run_app(RecommendationsService(settings).app(), host=host, port=port, print=None,
                access_log=None)  # no access log: paths hold user ids
