"""A load test with locust: users that classify, detect, search and submit small batch jobs with real photos.

    make locust                                   # against `make serve` on :3000, 1 minute, 16 users
    locust -f benchmarks/locustfile.py --headless -u 16 -r 4 -t 1m --host http://127.0.0.1:8080 \\
        --tier pro --api-key "$CV_API_KEY"        # through the edge, with a key of that tier

The mix of tasks follows the tier: a free key may only classify and detect (gateway/tiers.yaml), so a free user
does nothing else; pro and enterprise users also search and submit jobs. Batch jobs are followed until they
end (``job finished`` in the report, timed from submission), or for ``--job-wait-s`` at most.
"""

from __future__ import annotations

import io
import os
import random
import time
from typing import Any, cast

from locust import FastHttpUser, between, events, task
from locust.argument_parser import LocustArgumentParser

# Task weights per tier: what a typical caller of that tier does.
MIX: dict[str, dict[str, int]] = {
    "free": {"classify": 6, "detect": 4, "search": 0, "batch_job": 0},
    "pro": {"classify": 5, "detect": 3, "search": 2, "batch_job": 1},
    "enterprise": {"classify": 4, "detect": 3, "search": 2, "batch_job": 2},
}


@events.init_command_line_parser.add_listener
def _arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument("--tier", choices=sorted(MIX), default="pro", help="the task mix (and the key's tier)")
    parser.add_argument("--api-key", default=os.environ.get("CV_API_KEY", ""), help="sent as a Bearer token")
    parser.add_argument("--job-wait-s", type=float, default=30.0, help="how long to follow a batch job")


def _photos() -> list[tuple[str, bytes]]:
    from PIL import Image
    from skimage import data

    out = []
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append((f"{name}.jpg", buffer.getvalue()))
    return out


PHOTOS = _photos()


class ApiUser(FastHttpUser):
    """One caller: a keep-alive connection, a short think time, tasks drawn by the tier's weights."""

    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.tier: str = getattr(options, "tier", "pro")
        self.job_wait_s: float = getattr(options, "job_wait_s", 30.0)
        key = getattr(options, "api_key", "")
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}
        weights = MIX[self.tier]
        self.choices = [name for name, weight in weights.items() for _ in range(weight)]

    @task
    def one(self) -> None:
        getattr(self, random.choice(self.choices))()

    def _post(self, path: str, files: dict[str, Any] | list[Any], data: dict[str, str], name: str) -> Any:
        return self.client.post(path, files=cast(Any, files), data=data, headers=self.auth, name=name)  # a list too

    def classify(self) -> None:
        name, content = random.choice(PHOTOS)
        self._post("/api/v1/classify", {"image": (name, content, "image/jpeg")}, {"top_k": "5"}, "classify")

    def detect(self) -> None:
        name, content = random.choice(PHOTOS)
        self._post("/api/v1/detect", {"image": (name, content, "image/jpeg")}, {}, "detect")

    def search(self) -> None:
        name, content = random.choice(PHOTOS)
        self._post("/api/v1/search", {"image": (name, content, "image/jpeg")}, {"top_k": "5"}, "search")

    def batch_job(self) -> None:
        files = [("images", (n, c, "image/jpeg")) for n, c in random.sample(PHOTOS, 2)]
        started = time.perf_counter()
        answer = self._post("/api/v1/batch", files, {"task": "classify", "mode": "job"}, "batch (job)")
        if answer.status_code != 202:
            return
        job_id = answer.json()["id"]
        while time.perf_counter() - started < self.job_wait_s:
            status = self.client.get(f"/api/v1/jobs/{job_id}", headers=self.auth, name="jobs/[id]")
            if status.status_code != 200 or status.json()["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        else:
            return  # still running: not counted as finished
        events.request.fire(
            request_type="JOB",
            name="job finished",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=None if status.status_code == 200 else RuntimeError(f"HTTP {status.status_code}"),
            context={},
        )
