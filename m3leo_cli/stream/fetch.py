"""One row group from the Hub into the cache, and the prefetcher that runs ahead of a stream.

A row group's byte spans (its ``path``/``content`` column chunks) go by HTTP range through the
Hub engine (``full.plan.HttpRanges``: pacing, token, proxies, retries, a dropped connection
resumed where it stopped) into a sparse file of the shard's size, which pyarrow decodes with
page checksum verification (``full.unpack``: the rows are checked as a download checks them).
A corrupt page fails the row group; it is fetched once more, and a second failure is that row
group's counted failure (its samples are skipped with the reason, the stream goes on).

The prefetcher fetches row groups in the order the stream first needs them, holding at most
``window`` bytes fetched but not yet reached by the consumer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import HubConnectionError, OfflineError, ShardError, StreamError, unit_reason
from .cache import RowGroupCache
from .plan import RowGroup, StreamPlan, shard_reader

if TYPE_CHECKING:
    from ..config import Settings
    from ..hub.client import HubClient

TRIES = 2  # a row group whose pages fail their checksums is fetched once more
FATAL = (HubConnectionError, OfflineError)  # no network: the stream cannot go on at all


@dataclass
class FetchCounts:
    fetched: int = 0  # row groups fetched
    hits: int = 0  # row groups found in the cache
    bytes: int = 0
    requests: int = 0
    retried: int = 0


@dataclass
class Source:
    """Where row groups come from and go to, and what fetching them counted."""

    client: HubClient
    settings: Settings
    plan: StreamPlan
    cache: RowGroupCache
    counts: FetchCounts


def fetch_group(src: Source, g: RowGroup, tiles: dict[str, str], pinned: set[str]) -> None:
    """Make ``tiles`` ({tile id: path}) of row group ``g`` present in the cache."""
    cache, counts = src.cache, src.counts

    def cached() -> bool:
        if not cache.has(g, tiles.values()):
            return False
        counts.hits += 1
        cache.touch(g)
        return True

    if cached():
        return
    with cache.lock(g):
        if cached():  # another worker or rank fetched it meanwhile
            return
        for attempt in range(TRIES):
            try:
                written = _fetch_once(src, g, tiles)
                break
            except ShardError:
                if attempt + 1 == TRIES:
                    raise
                counts.retried += 1
        cache.commit(g, written, pinned)
        counts.fetched += 1


def _fetch_once(src: Source, g: RowGroup, tiles: dict[str, str]) -> dict[str, tuple[int, str]]:
    from ..full.index import parse_footer
    from ..full.unpack import RowRules, open_local, unpack_parquet

    plan, cache, counts = src.plan, src.cache, src.counts

    folder = cache.folder(g)
    folder.mkdir(parents=True, exist_ok=True)
    sparse = folder.parent / f".{g.rg}.{os.getpid()}.{threading.get_ident()}.ranges"
    reader = shard_reader(src.client, src.settings, g)
    fd = os.open(sparse, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, g.size)  # holes where nothing was fetched: they fail the page CRCs

        def advance(n: int) -> None:
            counts.bytes += n

        for start, end in plan.spans[g]:
            counts.requests += reader.into(fd, start, end - 1, advance)
        # every row of the group is kept, not only the wanted ones: a row group mixes splits,
        # and the val split of the same run (or the next selection) then reads it from the cache
        rules = RowRules(g.region, None, None, None)
        metadata = parse_footer(plan.footers[g.sha256], g.shard)
        with open_local(sparse, metadata=metadata) as pf:
            report = unpack_parquet(
                pf, folder, rules, source=g.shard, row_groups=[g.rg], durable=False
            )
    finally:
        os.close(fd)
        sparse.unlink(missing_ok=True)
    written = {f.path: (f.size, f.sha256) for f in report.written}
    lacking = [p for p in tiles.values() if p not in written]
    if lacking:
        why = report.refused[0][1] if report.refused else "not in the row group its index names"
        raise ShardError(f"{g.label}: {len(lacking)} wanted rows unusable ({why})")
    return written


@dataclass
class Prefetcher:
    """Fetch ``order``'s row groups ahead of the consumer in a thread, ``window`` bytes ahead."""

    settings: Settings
    plan: StreamPlan
    cache: RowGroupCache
    order: Sequence[RowGroup]  # in order of first need
    window: int
    wanted: Callable[[RowGroup], dict[str, str]]
    counts: FetchCounts = field(default_factory=FetchCounts)
    pinned: set[str] = field(default_factory=set)  # change through pin() / unpin() only

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._done: dict[RowGroup, BaseException | None] = {}
        self._ahead = 0  # bytes fetched (or being fetched) that the consumer has not reached
        self._reached: set[RowGroup] = set()
        self._counted: set[RowGroup] = set()  # groups whose bytes count towards the window
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="m3leo-stream-fetch", daemon=True)

    def start(self) -> Prefetcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        from ..hub.client import HubClient

        try:
            with HubClient(self.settings) as client:
                src = Source(client, self.settings, self.plan, self.cache, self.counts)
                for g in self.order:
                    size = self.plan.group_bytes.get(g, 0)
                    with self._cond:
                        while (
                            not self._stop and self._ahead > 0 and self._ahead + size > self.window
                        ):
                            self._cond.wait()
                        if self._stop:
                            return
                        if g not in self._reached:
                            self._ahead += size
                            self._counted.add(g)
                    err: BaseException | None = None
                    try:
                        fetch_group(src, g, self.wanted(g), self.snapshot())
                    except Exception as exc:  # noqa: BLE001 - every failure is this group's
                        err = exc
                    with self._cond:
                        self._done[g] = err
                        self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - e.g. a client that cannot be built
            with self._cond:
                for g in self.order:
                    self._done.setdefault(g, exc)
                self._cond.notify_all()

    def pin(self, keys: set[str]) -> None:
        """Row groups the consumer still needs: never evicted by this stream's fetches."""
        with self._cond:
            self.pinned.update(keys)

    def unpin(self, key: str) -> None:
        with self._cond:
            self.pinned.discard(key)

    def snapshot(self) -> set[str]:
        with self._cond:
            return set(self.pinned)

    def wait(self, g: RowGroup) -> None:
        """Block until ``g`` is fetched; raise its failure (a fatal one as it is, another as a
        StreamError naming the row group and why)."""
        with self._cond:
            if g not in self._reached:
                self._reached.add(g)
                if g in self._counted:  # it counted towards the window: release it
                    self._ahead -= self.plan.group_bytes.get(g, 0)
                self._cond.notify_all()
            while g not in self._done:
                self._cond.wait()
            err = self._done[g]
        if err is None:
            return
        if isinstance(err, FATAL):
            raise err
        raise StreamError(f"{g.label}: {unit_reason(err)}")

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
