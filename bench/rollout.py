"""A model rollout over the LAN: how long until every node holds the new model, and who served the bytes.

Two measures:
- `real_rollout`: N nodes in this process, each a real `ModelServer` on loopback and a real `fetch_model`, one
  seed holding the model; nodes that finish serve too (as their beacons would say). Bytes served per peer come
  from the servers' counters.
- `emulated_rollout`: the same policy (random holder, at most `max_uploads` per peer, a busy peer sends the
  fetcher elsewhere) for 1,000+ nodes in simulated time, with a per-node link speed: the shape of a large rollout.

Goal (issue 23): no single host serves more than its share; a single-host rollout would have the seed serve N-1
copies, the peer tree keeps every host near `max_uploads` x log2(N) copies at most.
"""

from __future__ import annotations

import math
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_store.holdings import ModelHoldings
from model_store.peers import ModelServer, fetch_model


@dataclass
class RolloutFigures:
    nodes: int
    model_bytes: int
    seconds_until_all: float
    copies_served_max: float
    copies_served_mean: float
    seed_copies: float
    goal_copies_max: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def goal_copies(nodes: int, max_uploads: int) -> float:
    """Copies a host may serve in a tree spread: max_uploads per round, log2(N) rounds."""
    return max_uploads * max(1.0, math.log2(nodes))


def real_rollout(
    nodes: int = 30,
    model_bytes: int = 8 << 20,
    max_uploads: int = 4,
    upload_bytes_per_s: float = 16e6,
    seed: int = 0,
) -> RolloutFigures:
    """Real servers and fetches on loopback (threads): every node but the seed fetches at once.

    Each upload is held to `upload_bytes_per_s` (a LAN link, not loopback's memory copy), so transfers take
    the time they take on boards and the spread can form.
    """
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="rollout-") as folder:
        root = Path(folder)
        data = rng.randbytes(model_bytes)
        holdings = [ModelHoldings(root / f"node-{index}") for index in range(nodes)]
        for index, holding in enumerate(holdings):
            holding.directory.mkdir()
            if index == 0:
                (holding.directory / "model.gguf").write_bytes(data)
                holding.refresh()
        reference = holdings[0].references()[0]
        servers = [
            ModelServer(holding, max_uploads=max_uploads, upload_bytes_per_s=upload_bytes_per_s).start()
            for holding in holdings
        ]
        serving = {servers[0].url("127.0.0.1")}
        lock = threading.Lock()

        def peers() -> list[str]:
            with lock:
                return list(serving)

        def fetch(index: int) -> None:
            fetch_model(reference, peers, holdings[index], deadline_s=600, rng=random.Random(seed + index))
            with lock:
                serving.add(servers[index].url("127.0.0.1"))

        started = time.monotonic()
        threads = [threading.Thread(target=fetch, args=(index,)) for index in range(1, nodes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        settle = time.monotonic() + 5.0  # a server counts an upload after its last write, once the fetcher has it
        while sum(server.counters.bytes_served for server in servers) < (nodes - 1) * model_bytes:
            if time.monotonic() > settle:
                break
            time.sleep(0.01)
        copies = [server.counters.bytes_served / model_bytes for server in servers]
        for server in servers:
            server.close()
    return RolloutFigures(
        nodes, model_bytes, elapsed, max(copies), sum(copies) / nodes, copies[0], goal_copies(nodes, max_uploads)
    )


def emulated_rollout(
    nodes: int = 1000,
    model_bytes: int = 94_000_000,
    max_uploads: int = 4,
    link_bytes_per_s: float = 100e6,
    load_s: float = 2.0,
    step_s: float = 0.05,
    seed: int = 0,
) -> RolloutFigures:
    """Simulated time: each upload gets its server's link divided by its uploads; a node reports after loading."""
    rng = random.Random(seed)
    holders = [0]
    uploads = [0] * nodes
    served = [0.0] * nodes
    transfers: dict[int, tuple[int, float]] = {}  # fetcher -> (server, bytes still to come)
    waiting = list(range(1, nodes))
    reported_at: list[float] = []
    now = 0.0
    while len(reported_at) < nodes - 1:
        still = []
        for fetcher in waiting:
            server = rng.choice(holders)
            if uploads[server] < max_uploads:
                uploads[server] += 1
                transfers[fetcher] = (server, float(model_bytes))
            else:
                still.append(fetcher)  # 503: try another holder next round
        waiting = still
        for fetcher, (server, left) in list(transfers.items()):
            moved = min(left, link_bytes_per_s / uploads[server] * step_s)
            served[server] += moved
            if left - moved <= 0:
                del transfers[fetcher]
                uploads[server] -= 1
                holders.append(fetcher)
                reported_at.append(now + step_s + load_s)
            else:
                transfers[fetcher] = (server, left - moved)
        now += step_s
    copies = [amount / model_bytes for amount in served]
    return RolloutFigures(
        nodes,
        model_bytes,
        max(reported_at),
        max(copies),
        sum(copies) / nodes,
        copies[0],
        goal_copies(nodes, max_uploads),
    )


def summary(label: str, figures: RolloutFigures) -> str:
    verdict = "met" if figures.copies_served_max <= figures.goal_copies_max else "MISSED"
    return (
        f"{label}: {figures.nodes} nodes, model {figures.model_bytes / 1e6:.0f} MB: every node has it after "
        f"{figures.seconds_until_all:.1f} s; copies served per peer max {figures.copies_served_max:.1f}, "
        f"mean {figures.copies_served_mean:.2f}, seed {figures.seed_copies:.1f} "
        f"(goal: max <= {figures.goal_copies_max:.1f}, {verdict}; one host alone would serve {figures.nodes - 1})"
    )
