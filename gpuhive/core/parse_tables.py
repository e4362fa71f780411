"""Pure parsers for the ranking tables: GPU throughput CSV and driver blacklist.

File reading lives in ``gpuhive.data``; here text goes in and frozen values come out.
Bad rows raise ``ConfigError`` naming the origin and line, so a user's extra file
fails loudly instead of being half-applied.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import re
from dataclasses import dataclass, field

from gpuhive.errors import ConfigError

# ---------------------------------------------------------------- throughput table


@dataclass(frozen=True)
class ThroughputRow:
    pattern: re.Pattern[str]
    vendor: str
    model: str
    compute_capability: str | None
    fp16_tflops: float
    source: str


@dataclass(frozen=True)
class ThroughputTable:
    rows: tuple[ThroughputRow, ...]
    _memo: dict[str, ThroughputRow | None] = field(
        default_factory=dict, compare=False, repr=False, hash=False)

    def lookup(self, gpu_name: str) -> ThroughputRow | None:
        """First row whose pattern is found in ``gpu_name`` (case-insensitive). Memoized."""
        try:
            return self._memo[gpu_name]
        except KeyError:
            pass
        found = next((r for r in self.rows if r.pattern.search(gpu_name)), None)
        if len(self._memo) < 65536:
            self._memo[gpu_name] = found
        return found

    def merged(self, later: ThroughputTable) -> ThroughputTable:
        """This table's rows first (they win), then ``later``'s."""
        return ThroughputTable(self.rows + later.rows)


_THROUGHPUT_COLUMNS = ("pattern", "vendor", "model", "compute_capability", "fp16_tflops",
                       "source")


def parse_gpu_throughput(text: str, origin: str = "gpu_throughput.csv") -> ThroughputTable:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = next(reader, None)
    if header is None:
        return ThroughputTable(())
    if tuple(h.strip() for h in header) != _THROUGHPUT_COLUMNS:
        raise ConfigError(f"{origin}: header must be {','.join(_THROUGHPUT_COLUMNS)}",
                          key="gpu_throughput", origin=origin)
    rows: list[ThroughputRow] = []
    for n, rec in enumerate(reader, 2):
        if len(rec) != len(_THROUGHPUT_COLUMNS):
            raise ConfigError(f"{origin}: row {n} has {len(rec)} columns, expected 6",
                              key="gpu_throughput", origin=origin, row=n)
        pattern, vendor, model, cc, tflops, source = (c.strip() for c in rec)
        try:
            rx = re.compile(pattern, re.IGNORECASE)
            value = float(tflops)
        except (re.error, ValueError) as exc:
            raise ConfigError(f"{origin}: row {n}: {exc}", key="gpu_throughput",
                              origin=origin, row=n) from exc
        if value <= 0:
            raise ConfigError(f"{origin}: row {n}: fp16_tflops must be > 0",
                              key="gpu_throughput", origin=origin, row=n)
        if not source:
            raise ConfigError(f"{origin}: row {n}: every figure needs a source",
                              hint="cite the vendor datasheet or say how it was measured",
                              key="gpu_throughput", origin=origin, row=n)
        rows.append(ThroughputRow(rx, vendor.lower(), model, cc or None, value, source))
    return ThroughputTable(tuple(rows))


# ---------------------------------------------------------------- driver blacklist

Version = tuple[int, ...]
_VERSION = re.compile(r"^\d+(\.\d+)*$")
_OPS = ("<=", ">=", "<", ">", "==")


def parse_version(text: str) -> Version | None:
    """'535.104.05' → (535, 104, 5); anything else → None."""
    t = text.strip()
    return tuple(int(p) for p in t.split(".")) if _VERSION.match(t) else None


@dataclass(frozen=True)
class DriverRule:
    vendor: str  # "nvidia", "amd", "apple" or "*"
    spec: str  # as written
    reason: str
    origin: str = ""

    def matches(self, vendor: str, version: str) -> bool:
        if self.vendor not in ("*", vendor.lower()):
            return False
        for op in _OPS:
            if self.spec.startswith(op):
                have, want = parse_version(version), parse_version(self.spec[len(op):])
                if have is None or want is None:
                    return False
                return {"<=": have <= want, ">=": have >= want, "<": have < want,
                        ">": have > want, "==": have == want}[op]
        return fnmatch.fnmatchcase(version.strip(), self.spec)


@dataclass(frozen=True)
class DriverBlacklist:
    rules: tuple[DriverRule, ...] = ()
    _memo: dict[tuple[str, str], DriverRule | None] = field(
        default_factory=dict, compare=False, repr=False, hash=False)

    def check(self, vendor: str, version: str | None) -> DriverRule | None:
        """The first rule that refuses this driver, or None. Memoized."""
        if not version or not self.rules:
            return None
        key = (vendor, version)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = next((r for r in self.rules if r.matches(vendor, version)), None)
        if len(self._memo) < 65536:
            self._memo[key] = found
        return found

    def merged(self, other: DriverBlacklist) -> DriverBlacklist:
        return DriverBlacklist(self.rules + other.rules)


def parse_driver_blacklist(text: str, origin: str = "driver_blacklist.txt") -> DriverBlacklist:
    rules: list[DriverRule] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ConfigError(f"{origin}: line {n}: expected '<vendor> <version spec> <reason>'",
                              key="driver_blacklist", origin=origin, line=n)
        vendor, spec, reason = parts[0].lower(), parts[1], parts[2].strip()
        op = next((o for o in _OPS if spec.startswith(o)), None)
        if op is not None and parse_version(spec[len(op):]) is None:
            raise ConfigError(f"{origin}: line {n}: {spec!r} compares against a non-version",
                              key="driver_blacklist", origin=origin, line=n)
        rules.append(DriverRule(vendor, spec, reason, origin))
    return DriverBlacklist(tuple(rules))
