"""How a serving process runs its models and its HTTP server: ONNX Runtime sessions, batching, threads, the C heap and
keep-alive. Part of :class:`services.config.ServingSettings` (``CV_`` environment variables, e.g.
``CV_ORT_INTRA_OP_THREADS``); nothing reads this class alone.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, PositiveInt


class RuntimeSettings(BaseModel):
    """The model runtime's fields of the serving settings."""

    # ONNX Runtime intra-op threads per session. 1: on a small box the parallelism comes from running two batches at
    # once (CV_MAX_CONCURRENT_RUNS) and from the api's own threads, and a second intra-op thread that does not spin
    # cost more in wake-ups than it gave (benchmarks/reports/peers.md); a model service with cores of its own sets
    # it to them (docker-compose.prod.yml).
    ort_intra_op_threads: int = Field(default=1, gt=0)
    # Whether ONNX Runtime's idle intra-op threads busy-wait for the next run. Off: on a small CPU the api and
    # the other model services need those cycles (benchmarks/reports/peers.md measured it).
    ort_allow_spinning: bool = False
    # Intra-op threads of the second session a model runs on when no other run of it is in flight (a request alone,
    # as at concurrency 1): its threads spin while the run lasts and stop when it ends, so a lone request has every
    # core and overlapping runs keep one thread each (benchmarks/reports/peers.md). Costs a second ONNX Runtime session
    # per loaded file that runs alone (+10 MB for the classifier, +20 for the detector, benchmarks/reports/memory.md).
    # 0, or not above ort_intra_op_threads: one session per file.
    ort_solo_threads: int = Field(default=2, ge=0)
    # The C heap of the api, model service and job worker processes (services/process.py,
    # benchmarks/reports/memory_detector.md). After a batch, at most once per this many seconds, glibc's free heap
    # pages go back to the kernel (malloc_trim); without it a worker stays near its largest burst (0: never).
    malloc_trim_interval_s: float = Field(default=1.0, ge=0)
    # Once started, the api and the model services freeze what start-up made out of Python's cyclic collector
    # (services/process.py): its full collections walked ~300,000 objects, ~185 ms with the GIL held, under load.
    gc_freeze_at_start: bool = True
    # The classifier's and embedder's resize through the compiled passes (services/models/resample.py, ADR 0021):
    # Pillow's bytes at 4-6x less CPU. false: Pillow's Image.resize (the same bytes), e.g. to compare the two.
    native_resample: bool = True
    # A fixed mmap threshold: buffers at least this large are mapped and unmapped on their own, never kept in the
    # heap. It bounds the heap better than trimming but cost the detector worker 17 % more CPU per image (a page fault
    # per 4 KiB of every large buffer). 0: glibc's own rising threshold (so does an explicit MALLOC_MMAP_THRESHOLD_).
    malloc_mmap_threshold_bytes: int = Field(default=0, ge=0, le=32 * 1024 * 1024)
    # BentoML's own access line per call, in the api and every model service. Off: the api logs each request
    # (services/http/middleware.py) and each model batch is logged with its request ids (services/models/worker.py).
    bentoml_access_log: bool = False
    # ONNX Runtime's CPU memory arena and memory-pattern planning per session (benchmarks/reports/memory.md measures
    # what turning them off saves and costs); on by default, as ONNX Runtime has them.
    ort_cpu_mem_arena: bool = True
    ort_mem_pattern: bool = True
    # The largest batch one ONNX Runtime run takes on the CPU provider; a larger batch (the model services' adaptive
    # batcher merges up to CV_MAX_BATCH_SIZE calls) runs in slices of it. 4: on this CPU each image costs the same as
    # in a batch of 16 (detector 10.3 vs 10.6 ms, classifier 3.1 vs 3.4 ms on one thread) and the arena holds half
    # (detector 163 vs 336 MB) without growing with the batch shapes it has seen (benchmarks/reports/memory_ort.md).
    ort_cpu_max_batch: int = Field(default=4, gt=0)
    # Per model, over the above, e.g. {"detector": 1}: the arena holds a run's activations, and a 640x640 detector input
    # is eight times a 224x224 one. Runs of 1 took 60 MB off the detector worker's peak (400 -> 340 MB RSS) but cost it
    # ~20 % more CPU per image end to end (benchmarks/reports/memory_detector.md), so none by default: for a
    # deployment short of memory, not of CPU.
    ort_cpu_max_batch_per_model: dict[str, PositiveInt] = Field(default_factory=dict)
    # Execution providers in order of preference; missing ones are skipped.
    ort_providers: list[str] = Field(
        default_factory=lambda: [
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ]
    )

    # ONNX Runtime's TensorRT provider, when this build has it: FP16 engines by default; INT8 for
    # quantized (Q/DQ) files, whose scales TensorRT reads from the graph. Engines are cached on disk.
    ort_trt_fp16: bool = True
    ort_trt_int8: bool = False

    # Adaptive batching of the model services (tuned in benchmarks/reports/serving.md).
    batching_enabled: bool = True
    max_batch_size: int = Field(default=16, gt=0)
    # The longest a request may wait in the batching queue before the dispatcher sheds it with 503.
    max_latency_ms: int = Field(default=5000, gt=0)
    # Models in the api process (services/clients/batching.py, benchmarks/reports/peers.md): batches of one model run
    # at once (2: one batch's Python work overlaps the other's ONNX Runtime call), and the largest such batch (4: in
    # three runs at concurrency 16 as many answers a second as with 16, and a detect p99 lower in each, 23-47 %; the
    # classify p99 went either way; on this CPU a batch saves little model time per image, and a long one holds up
    # the calls behind it).
    max_concurrent_runs: int = Field(default=2, gt=0)
    micro_batch_size: int = Field(default=4, gt=0)
    # While the api serves one inference request and nothing else (services/models/runtime.py DEMAND), it decodes
    # that request's image and runs its in-process model on the event loop instead of handing each to a thread and
    # back, for images of at most this many pixels (a decode and a run of a few milliseconds): two thread hand-offs
    # less, ~1.2 ms of a ~10 ms classify at concurrency 1 (benchmarks/reports/peers.md). A request arriving meanwhile
    # waits for that step. 0: always in a thread.
    inline_alone_max_pixels: int = Field(default=1_000_000, ge=0)
    # At any load, the api decodes uploads of at most this many pixels (640x480) on the event loop rather than in a
    # thread: a hand-off to a thread and back less per request, for a decode of about a millisecond. Classify at
    # concurrency 16 answered ~10 % more (three pairs of peers.py runs, TECHNICAL.md); an 810x1080 photo gained
    # nothing, so larger images stay in a thread. 0: only as inline_alone_max_pixels says.
    decode_inline_max_pixels: int = Field(default=640 * 480, ge=0)
    # How long a process started by `python -m services.serve` (production's model services and api replicas) keeps an
    # idle keep-alive connection. Longer than its clients keep one, so the client, never the server, closes an idle
    # connection: the api's client of a model service (BentoML's, aiohttp) keeps one 15 s, Traefik 4 s
    # (gateway/traefik/traefik.yml), a job worker's (httpx) 5 s. With uvicorn's 5 s a model service closed connections
    # the api still held, and a call sent on one as it closed failed ("Can not write request body": 1 answer in 51,428
    # in the soak of benchmarks/reports/memory_topology.md, a 503 to the user).
    keep_alive_timeout_s: int = Field(default=20, gt=0)

    def cpu_max_batch(self, model: str) -> int:
        """The largest batch one ONNX Runtime run of ``model`` takes on the CPU provider."""
        return self.ort_cpu_max_batch_per_model.get(model, self.ort_cpu_max_batch)
